# shellcheck shell=bash
# strata in chroot isolation, for ../shared/peers/bench.sh: the strata
# adapter (strata.sh, beside this file) with every command run as uid 0 of a
# user namespace that maps the builder's subordinate range
# (`unshare --map-root-user --map-auto`, util-linux 2.38+) and builds passed
# `--isolation chroot`. That stands in for root in a CI container with the
# engine's default profile, where chroot isolation is what strata picks:
# the same runner, ids and store layout, without a container engine in the
# timed path. vs_buildah.sh copies it as tools/strata-chroot.sh; run
# TOOLS="strata strata-chroot" to put both isolations side by side.
# shellcheck source=strata.sh
source "$(dirname "${BASH_SOURCE[0]}")/strata.sh"
TOOL_NAME=strata-chroot
STRATA_BENCH_ROOT="${STRATA_CHROOT_BENCH_ROOT:-/var/tmp/peers-bench/strata-chroot-root}"
S="unshare --map-root-user --map-auto $STRATA_BIN --root $STRATA_BENCH_ROOT"

tool_version() { echo "strata $($STRATA_BIN --version 2>/dev/null | head -1) --isolation chroot"; }

STRATA_BUILD_FLAGS="--isolation chroot"

cmd_reset() { echo "buildah unshare rm -rf $STRATA_BENCH_ROOT; true"; }
cmd_storage_du() { echo "buildah unshare du -sk $STRATA_BENCH_ROOT | cut -f1"; }
