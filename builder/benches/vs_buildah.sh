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
export STRATA_BIN="$work/strata"
TOOLS="${TOOLS:-buildah strata}" bash "$work/peers/bench.sh" "$@"
