# Source me: exports where the tests find the real engines started by scripts/dev-*.sh.
export GPUFLEET_TEST_PG_URL="${GPUFLEET_TEST_PG_URL:-postgresql+psycopg://gpufleet:gpufleet@127.0.0.1:${GPUFLEET_PG_PORT:-55432}/gpufleet}"
# Slurm and Kubernetes scripts append their own exports below via their env files.
for f in /var/lib/gpufleet-dev/slurm.env /var/lib/gpufleet-dev/k8s.env /var/lib/gpufleet-dev/artifacts.env /var/lib/gpufleet-dev/boards.env; do
    [ -f "$f" ] && source "$f"
done
true
