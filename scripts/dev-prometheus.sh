#!/usr/bin/env bash
# A real Prometheus (Debian package `prometheus`) scraping a gpufleet /metrics endpoint.
#   scripts/dev-prometheus.sh run  --target HOST:PORT [--port 9090] [--dir DIR] [--interval 1s] [--path /metrics]
#       [--token-file FILE]   the scrape token (gpufleet writes <home>/metrics.token; metrics_auth: token)
#       foreground (exec): tests start it like this and stop it by its pid
#   scripts/dev-prometheus.sh up   --target HOST:PORT [...]   background, pid in DIR/prometheus.pid
#   scripts/dev-prometheus.sh down|status|url [--dir DIR] [--port 9090]
# Default target: the gpufleet server at 127.0.0.1:8765 (its /metrics route).
set -euo pipefail

CMD="${1:-up}"; shift || true
TARGET="127.0.0.1:8765"
PORT="${GPUFLEET_PROM_PORT:-9090}"
DIR="${GPUFLEET_PROM_DIR:-/var/tmp/gpufleet-prometheus}"
INTERVAL="5s"
METRICS_PATH="/metrics"
TOKEN_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --target) TARGET="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --dir) DIR="$2"; shift 2 ;;
        --interval) INTERVAL="$2"; shift 2 ;;
        --path) METRICS_PATH="$2"; shift 2 ;;
        --token-file) TOKEN_FILE="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

need_pkg() {
    if ! command -v prometheus >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    fi
}

write_config() {
    mkdir -p "$DIR/data"
    cat > "$DIR/prometheus.yml" <<EOF
global:
  scrape_interval: ${INTERVAL}
  evaluation_interval: ${INTERVAL}
scrape_configs:
  - job_name: gpufleet
    metrics_path: ${METRICS_PATH}
    static_configs:
      - targets: ["${TARGET}"]
EOF
    if [ -n "$TOKEN_FILE" ]; then
        printf '    authorization:\n      type: Bearer\n      credentials_file: %s\n' "$(realpath "$TOKEN_FILE")" \
            >> "$DIR/prometheus.yml"
    fi
}

args() {
    echo --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
        --web.listen-address="127.0.0.1:${PORT}" --log.level=warn
}

case "$CMD" in
run)
    need_pkg; write_config
    # shellcheck disable=SC2046
    exec prometheus $(args)
    ;;
up)
    need_pkg; write_config
    if [ -f "$DIR/prometheus.pid" ] && kill -0 "$(cat "$DIR/prometheus.pid")" 2>/dev/null; then
        echo "http://127.0.0.1:${PORT}"; exit 0
    fi
    # shellcheck disable=SC2046
    nohup prometheus $(args) >"$DIR/log" 2>&1 &
    echo $! > "$DIR/prometheus.pid"
    for _ in $(seq 1 60); do
        curl -fsS "http://127.0.0.1:${PORT}/-/ready" >/dev/null 2>&1 && { echo "http://127.0.0.1:${PORT}"; exit 0; }
        sleep 0.5
    done
    echo "prometheus did not become ready; see $DIR/log" >&2; exit 1
    ;;
down)
    if [ -f "$DIR/prometheus.pid" ]; then
        kill "$(cat "$DIR/prometheus.pid")" 2>/dev/null || true
        rm -f "$DIR/prometheus.pid"
    fi
    ;;
status)
    [ -f "$DIR/prometheus.pid" ] && kill -0 "$(cat "$DIR/prometheus.pid")" 2>/dev/null && echo running || { echo stopped; exit 1; }
    ;;
url)
    echo "http://127.0.0.1:${PORT}"
    ;;
*) echo "usage: $0 run|up|down|status|url [--target HOST:PORT] [--port N] [--dir DIR] [--interval 5s]" >&2; exit 2 ;;
esac
