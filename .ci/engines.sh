#!/usr/bin/env bash
# Container engines for the CI-engine tests (builder/tests/ci_engines.rs), as
# root: a private dockerd and a rootful podman API service, each on its own
# socket that the test user may use through the group strata-ci-engines.
#
#   bash .ci/engines.sh install   # Debian's docker.io (podman comes with setup-host.sh)
#   bash .ci/engines.sh start     # prints the variables the tests read
#   bash .ci/engines.sh stop
#
# dockerd runs with no bridge network and no firewall changes
# (--bridge=none --iptables=false --ip-masq=false): containers use
# `--network host` and talk only to 127.0.0.1. Its data, exec root, pid
# file and socket are private to $dir, so it disturbs no other engine on the
# machine. Both engines get the offline base images (busybox, debian-slim)
# from /var/tmp/peers-images.
set -euo pipefail
# No "strata" in this path: the sandbox tests look for stray overlay mounts by
# that name, and podman keeps its overlay directory mounted.
dir=/var/tmp/ci-container-engines
group=strata-ci-engines
user=${STRATA_CI_USER:-builder}
images=${STRATA_TEST_IMAGES:-/var/tmp/peers-images}
docker_sock=$dir/docker.sock
podman_sock=$dir/podman.sock
docker=(/usr/bin/docker -H "unix://$docker_sock")
podman=(podman --root "$dir/podman-root" --runroot "$dir/podman-run" --runtime runc
        --cgroup-manager cgroupfs --events-backend file)

install_engines() {
    if ! [ -x /usr/sbin/dockerd ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io
    fi
    command -v podman >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman
}

wait_for() { # seconds command…
    local n=$1; shift
    for _ in $(seq $((n * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    "$@"
}

start_engines() {
    install -d -m 755 "$dir"
    getent group "$group" >/dev/null || groupadd --system "$group"
    # For this run only: stop removes the user from the group again.
    id -nG "$user" | tr ' ' '\n' | grep -qx "$group" || usermod -aG "$group" "$user"
    stop_engines quiet
    echo '{}' > "$dir/daemon.json"
    /usr/sbin/dockerd --config-file "$dir/daemon.json" \
        --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
        --data-root "$dir/docker-data" --exec-root "$dir/docker-exec" \
        --pidfile "$dir/docker.pid" -H "unix://$docker_sock" --group "$group" \
        > "$dir/dockerd.log" 2>&1 &
    if ! wait_for 60 "${docker[@]}" version; then
        tail -30 "$dir/dockerd.log" >&2
        return 1
    fi
    "${podman[@]}" system service --time=0 "unix://$podman_sock" > "$dir/podman.log" 2>&1 &
    echo $! > "$dir/podman.pid"
    wait_for 30 test -S "$podman_sock"
    chgrp "$group" "$podman_sock" && chmod 660 "$podman_sock"
    for tar in "$images"/busybox-latest.docker.tar "$images"/debian-bookworm-slim.docker.tar; do
        "${docker[@]}" load -q -i "$tar" >/dev/null
        "${podman[@]}" load -q -i "$tar" >/dev/null
    done
    # runc cannot raise limits here (root lacks CAP_SYS_RESOURCE): containers
    # get exactly the service's own, which the tests pass with --ulimit.
    local pid nofile nproc
    pid="$(cat "$dir/podman.pid")"
    nofile="$(awk '/^Max open files/ {print $5}' "/proc/$pid/limits")"
    nproc="$(awk '/^Max processes/ {print $4}' "/proc/$pid/limits")"
    echo "STRATA_TEST_DOCKER_HOST=unix://$docker_sock"
    echo "STRATA_TEST_PODMAN_URL=unix://$podman_sock"
    echo "STRATA_TEST_PODMAN_ULIMITS=nofile=$nofile:$nofile,nproc=$nproc:$nproc"
}

stop_engines() {
    if [ -f "$dir/podman.pid" ]; then
        kill "$(cat "$dir/podman.pid")" 2>/dev/null || true
        rm -f "$dir/podman.pid" "$podman_sock"
        # podman bind-mounts its overlay directory onto itself and leaves it.
        umount "$dir/podman-root/overlay" 2>/dev/null || true
    fi
    if [ -f "$dir/docker.pid" ]; then
        local pid; pid="$(cat "$dir/docker.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        rm -f "$dir/docker.pid"
    fi
    if [ "${1:-}" != quiet ] && id -nG "$user" | tr ' ' '\n' | grep -qx "$group"; then
        gpasswd -d "$user" "$group" >/dev/null
    fi
}

case "${1:-}" in
    install) install_engines ;;
    start) start_engines ;;
    stop) stop_engines ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
