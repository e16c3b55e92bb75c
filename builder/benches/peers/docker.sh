# shellcheck shell=bash
# `docker build` (Debian's docker.io: BuildKit inside a rootful daemon,
# overlay2; its own CLI, /usr/bin/docker, whose BuildKit needs no buildx
# plugin) as a peer for ../shared/peers/bench.sh, same functions as its
# tools/buildah.sh. vs_buildah.sh starts a private dockerd for the run
# (its own data-root, exec-root and socket; no bridge, no iptables), puts
# the bench user in the docker group for the run only, and stops it after.
TOOL_NAME=docker
DOCKER_BENCH_DIR="${DOCKER_BENCH_DIR:-/var/tmp/strata-bench/docker}"
D="env DOCKER_HOST=unix://$DOCKER_BENCH_DIR/docker.sock DOCKER_BUILDKIT=1 ${DOCKER_CLI:-/usr/bin/docker}"

tool_version() { $D version --format 'docker {{.Server.Version}} (BuildKit)'; }

# Empty storage: no build cache, no images.
cmd_reset() {
    echo "$D builder prune -af >/dev/null 2>&1; $D image prune -af >/dev/null 2>&1; $D rmi -f \$($D images -aq) >/dev/null 2>&1; true"
}

cmd_pull() { echo "$D pull -q $1 >/dev/null"; }

# cmd_build CONTEXT TAG LOG [extra flags...]; buildah's --format is dropped.
cmd_build() {
    local ctx=$1 tag=$2 logf=$3; shift 3
    local flags=() skip=0 a
    for a in "$@"; do
        if [ "$skip" = 1 ]; then skip=0; continue; fi
        if [ "$a" = --format ]; then skip=1; continue; fi
        flags+=("$a")
    done
    echo "cd $ctx && $D build --progress plain --network host ${flags[*]} -f Dockerfile -t $tag . >>$logf 2>&1"
}

cmd_build_nocache() { local a=$1 b=$2 c=$3; shift 3; cmd_build "$a" "$b" "$c" --no-cache "$@"; }

# Loopback registries are plain HTTP for dockerd by default. REMOTEREF may
# hold a command substitution (a fresh repository per run): evaluated once.
cmd_push() { echo "r=$2; $D tag $1 \$r && $D push -q \$r >>$3 2>&1"; }

cmd_export() { echo "rm -f $2 && $D tag $1 $3 && $D save -o $2 $3 >>$4 2>&1"; }

cmd_forget_blob_locations() { echo "true"; }

# The daemon's data-root is root's; its size as docker reports it.
cmd_storage_du() {
    echo "$D system df --format '{{.Size}}' | awk '{n=\$1+0; u=\$1; sub(/[0-9.]+/,\"\",u); m=(u==\"GB\")?1048576:(u==\"MB\")?1024:(u==\"kB\")?1:(u==\"B\")?1/1024:0; s+=n*m} END {printf \"%d\\n\", s}'"
}
