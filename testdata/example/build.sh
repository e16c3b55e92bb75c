#!/bin/sh
# Builds the README example offline and writes example.tar (docker load /
# podman load). When no busybox base is in the store, it first builds one
# from the host's static busybox with strata itself.
#
#   STRATA=path/to/strata testdata/example/build.sh [OUT.tar]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
strata=${STRATA:-strata}
out=${1:-example.tar}
base=strata-example/busybox:latest

if ! "$strata" images 2>/dev/null | grep -q '^strata-example/busybox '; then
    bb=${BUSYBOX:-$(command -v busybox || true)}
    if [ -z "$bb" ]; then
        echo "build.sh: no busybox on this host: install busybox-static or set BUSYBOX=/path/to/static/busybox" >&2
        exit 1
    fi
    if ! file -L "$bb" 2>/dev/null | grep -q 'statically linked'; then
        echo "build.sh: warning: $bb may not be statically linked; the image needs a static busybox" >&2
    fi
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' EXIT
    cp "$bb" "$ctx/busybox"
    chmod 0755 "$ctx/busybox"
    "$strata" build -f "$here/busybox-base/Dockerfile" -t "$base" "$ctx"
fi

"$strata" build -t strata-example/hello:latest -o "type=docker,dest=$out" "$here"
echo "wrote $out: load it with 'podman load -i $out' and run 'podman run --rm docker.io/strata-example/hello'"
