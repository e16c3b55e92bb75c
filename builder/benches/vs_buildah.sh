#!/usr/bin/env bash
# strata against buildah on the reference cases, side by side in one run of
# ../shared/peers/bench.sh (hyperfine, as the unprivileged user builder).
#
#   sudo bash builder/benches/vs_buildah.sh [case...]
#
# Builds strata in release mode, copies the peers folder to a scratch place
# with our adapter as tools/strata.sh (the shared folder is not ours to
# write), and runs TOOLS="buildah strata". SCENARIOS and RUNS_* pass through
# to bench.sh (e.g. SCENARIOS="cold warm touched nocache" RUNS_COLD=3).
# The summary table is printed at the end and kept under
# /var/tmp/strata-bench/peers/out/latest/.
#
# With docker in TOOLS (e.g. TOOLS="buildah docker strata"), a private
# dockerd (Debian's docker.io; apt-get install -y docker.io) runs for the
# bench only: its own data-root, exec-root and socket under
# /var/tmp/strata-bench/docker, --bridge=none --iptables=false
# --ip-masq=false; the bench user is in the docker group for the run only,
# and both are undone at the end.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
shared="${STRATA_SHARED:-$repo/../shared}"
work=/var/tmp/strata-bench
[ "$(id -u)" -eq 0 ] || { echo "run as root (bench.sh runs every timed command as builder)" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"

(cd "$repo" && cargo build --release --locked -p builder)
target="${CARGO_TARGET_DIR:-$repo/target}"
install -d -m 755 "$work"
install -m 755 "$target/x86_64-unknown-linux-gnu/release/strata" "$work/strata"

rm -rf "$work/peers" && cp -a "$shared/peers" "$work/peers"
# The shared folder is read-only; the staged cases must be writable (gen.sh).
chmod -R u+w "$work/peers"
cp "$repo/builder/benches/peers/strata.sh" "$work/peers/tools/strata.sh"
cp "$repo/builder/benches/peers/strata-chroot.sh" "$work/peers/tools/strata-chroot.sh"
cp "$repo/builder/benches/peers/docker.sh" "$work/peers/tools/docker.sh"
export STRATA_BIN="$work/strata"
TOOLS="${TOOLS:-buildah strata}"

dockerd_pid=""
stop_docker() {
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
    fi
    gpasswd -d builder docker >/dev/null 2>&1 || true
}
if [[ " $TOOLS " == *" docker "* ]]; then
    command -v dockerd >/dev/null || { echo "docker in TOOLS: apt-get install -y docker.io" >&2; exit 2; }
    d="$work/docker"
    install -d -m 711 "$d" "$d/data" "$d/exec"
    gpasswd -a builder docker >/dev/null
    trap stop_docker EXIT
    dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
        -H "unix://$d/docker.sock" --group docker \
        --bridge=none --iptables=false --ip-masq=false >"$d/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do
        DOCKER_HOST="unix://$d/docker.sock" docker info >/dev/null 2>&1 && break
        sleep 1
    done
    DOCKER_HOST="unix://$d/docker.sock" docker info >/dev/null \
        || { echo "dockerd did not start; see $d/dockerd.log" >&2; exit 1; }
fi
TOOLS="$TOOLS" bash "$work/peers/bench.sh" "$@"
