# shellcheck shell=bash
# strata's adapter for ../shared/peers/bench.sh (same functions as its
# tools/buildah.sh): each cmd_* PRINTS a command line that hyperfine runs as
# the unprivileged builder user. vs_buildah.sh copies this file into a copy of
# the peers folder as tools/strata.sh and runs TOOLS="buildah strata".
TOOL_NAME=strata
STRATA_BIN="${STRATA_BIN:-/var/tmp/strata-bench/strata}"
STRATA_BENCH_ROOT="${STRATA_BENCH_ROOT:-/var/tmp/peers-bench/strata-root}"
S="$STRATA_BIN --root $STRATA_BENCH_ROOT"
# bench.sh sources every adapter into one shell: no flag of another adapter
# (strata-chroot.sh sets it after sourcing this file) carries over.
STRATA_BUILD_FLAGS=""

tool_version() { echo "strata $($STRATA_BIN --version 2>/dev/null | head -1)"; }

# Empty storage for cold builds. Snapshot files belong to subordinate ids, so
# remove them inside the same user namespace mapping (buildah unshare maps the
# user's /etc/subuid range exactly as strata's sandbox does).
cmd_reset() { echo "buildah unshare rm -rf $STRATA_BENCH_ROOT; true"; }

cmd_pull() { echo "$S pull $1 >/dev/null"; }

# cmd_build CONTEXT TAG LOG [extra flags...]; buildah's --format docker is
# dropped (strata always writes Docker configs). STRATA_BUILD_FLAGS is put
# before them (the chroot adapter sets `--isolation chroot`).
cmd_build() {
    local ctx=$1 tag=$2 logf=$3; shift 3
    local flags=() skip=0 a
    for a in "$@"; do
        if [ "$skip" = 1 ]; then skip=0; continue; fi
        if [ "$a" = --format ]; then skip=1; continue; fi
        flags+=("$a")
    done
    echo "cd $ctx && $S build ${STRATA_BUILD_FLAGS:+$STRATA_BUILD_FLAGS }--progress plain ${flags[*]} -f Dockerfile -t $tag . >>$logf 2>&1"
}

cmd_build_nocache() { local a=$1 b=$2 c=$3; shift 3; cmd_build "$a" "$b" "$c" --no-cache "$@"; }

cmd_push() { echo "$S push $1 $2 >>$3 2>&1"; }

# docker-archive with NAME as its RepoTag.
cmd_export() { echo "rm -f $2 && $S tag $1 $3 && $S save -o $2 $3 >>$4 2>&1"; }

# strata keeps no blob-location cache between runs.
cmd_forget_blob_locations() { echo "true"; }

cmd_storage_du() { echo "buildah unshare du -sk $STRATA_BENCH_ROOT | cut -f1"; }
