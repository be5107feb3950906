#!/usr/bin/env bash
# The container image of the tests (no registry is reachable here): a tiny image built locally.
#   scripts/dev-images.sh up|down|status
#
# up: makes podman usable on this host and builds localhost/gpufleet-test:latest by `podman import`
#     of a rootfs made from Debian's busybox-static: /bin/busybox and its applets (sh, echo, cat,
#     sleep, ...) and the marker file /gpufleet-image-marker, which only this image has.
#     It lands in root's image store: a root server runs podman as root and the container as the
#     job's account (--user; see src/gpufleet/executors/local/container.py), so every account's jobs
#     use that one store and no per-user copy is needed. The rootfs is world-readable, so the image
#     works with any --user uid.
# Host fix-up, only where needed: crun refuses a "hybrid" cgroup layout (cgroup v1 hierarchies
# beside a cgroup2 mount that still holds controllers; e.g. hugetlb in some containers/VMs). The
# controllers left on cgroup2 get a v1 hierarchy like the others, which empties cgroup2 of them.
set -euo pipefail
IMAGE="${GPUFLEET_TEST_IMAGE:-localhost/gpufleet-test:latest}"
MARKER="gpufleet-test-image"

need_pkgs() {
    if ! command -v podman >/dev/null || ! command -v crun >/dev/null || [ ! -x /bin/busybox ] \
        || ! busybox --list 2>/dev/null | grep -qx sh || ! file_is_static /bin/busybox; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            podman crun busybox-static uidmap fuse-overlayfs slirp4netns catatonit >/dev/null
    fi
}

file_is_static() { ! ldd "$1" >/dev/null 2>&1; }

fix_cgroups() {
    local unified=/sys/fs/cgroup/unified c
    [ -f "$unified/cgroup.controllers" ] || return 0
    for c in $(cat "$unified/cgroup.controllers"); do
        mkdir -p "/sys/fs/cgroup/$c"
        mountpoint -q "/sys/fs/cgroup/$c" || mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" \
            || echo "dev-images: could not move cgroup controller $c off cgroup2 (crun may refuse to run)" >&2
    done
}

build() {
    local root
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' RETURN
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    echo "$MARKER" >"$root/gpufleet-image-marker"
    echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
    chmod -R a+rX "$root"
    tar -C "$root" -c . | podman import -q --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
}

works() {
    podman run --rm --network=host --pull=never --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" \
        --ulimit "nproc=1024:1024" "$IMAGE" cat /gpufleet-image-marker 2>&1 | grep -qx "$MARKER"
}

case "${1:-up}" in
up)
    need_pkgs
    fix_cgroups
    podman image exists "$IMAGE" || build
    if ! works; then
        podman run --rm --network=host --pull=never --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" \
            --ulimit "nproc=1024:1024" "$IMAGE" cat /gpufleet-image-marker >&2 || true
        echo "dev-images: podman cannot run $IMAGE (see above)" >&2
        exit 1
    fi
    echo "$IMAGE"
    ;;
down)
    podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
    ;;
status)
    podman image exists "$IMAGE" && works && echo "$IMAGE works" || { echo "$IMAGE: not built or not runnable"; exit 1; }
    ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
