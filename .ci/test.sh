#!/usr/bin/env bash
# The whole strata test suite — the README's test command, and what .ci/run calls.
#
#   sudo bash .ci/test.sh          (on a fresh Debian machine with the Rust toolchain)
#
# As root it: installs the packages the tests use and creates the unprivileged
# user `builder` with a subordinate id range (.ci/setup-host.sh), starts the
# local registry on 127.0.0.1:5000 (.ci/registry.sh) and builds the busybox
# and debian-slim base images offline (.ci/base-images.sh), checks formatting and
# clippy, builds every test binary, starts a private dockerd and a rootful
# podman service for the container-engine tests (.ci/engines.sh; stopped on
# exit), and then runs every test binary — unit, conformance and end-to-end —
# as `builder`, because rootless is the product: a test that passes only as
# root does not count.
#
# Environment: STRATA_SHARED (default ../shared beside the checkout),
# STRATA_TEST_FILTER (passed to every test binary), SKIP_SETUP=1 (reuse an
# already prepared machine).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
shared="${STRATA_SHARED:-$repo/../shared}"
shared="$(cd "$shared" && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
# One build, never rebuilt here: incremental state would only take disk.
export CARGO_INCREMENTAL=0
user=builder
ci_tmp=/var/tmp/strata-ci

step() { printf '\n==> %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (it installs packages and creates the test user)" >&2; exit 2; }

if [ "${SKIP_SETUP:-0}" != 1 ]; then
    step "host setup: packages, user $user, subuid range"
    bash "$repo/.ci/setup-host.sh"
    # Debian's docker.io for the container-engine tests (ci_engines.rs).
    bash "$repo/.ci/engines.sh" install
    step "local registry and offline base images"
    bash "$repo/.ci/registry.sh"
    bash "$repo/.ci/base-images.sh" busybox debian
fi
uid="$(id -u "$user")"
# The user's real home: podman and buildah read ~/.config/containers there
# (.ci/setup-host.sh writes runtime = runc, because crun fails on hybrid
# cgroup hosts, and marks the local registry insecure).
user_home="$(getent passwd "$user" | cut -d: -f6)"
install -d -m 1777 "$ci_tmp" && install -d -o "$user" -g "$user" "$ci_tmp/tmp"
install -d -m 700 -o "$user" -g "$user" "/run/user/$uid"

# The tests run as $user, who must be able to read the checkout, the shared
# corpus and the test binaries. A checkout under a private home (/root) is
# not readable, so run from a readable copy instead.
if ! runuser -u "$user" -- test -r "$repo/Cargo.toml" -a -r "$shared/corpus/README.md"; then
    stage="$ci_tmp/stage"
    step "checkout not readable by $user: running from a copy in $stage"
    rm -rf "$stage" && mkdir -p "$stage/main"
    tar -C "$repo" --exclude=./target -cf - . | tar -C "$stage/main" -xf -
    cp -a "$shared" "$stage/shared"
    chmod -R a+rX "$stage"
    exec env STRATA_SHARED="$stage/shared" SKIP_SETUP=1 bash "$stage/main/.ci/test.sh"
fi
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

cd "$repo"
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "sizes: files and functions of builder/src within limits; the solver knows no Dockerfile"
bash .ci/sizes.sh builder/src 600 120
if grep -rn 'frontend' builder/src/solver --include='*.rs' | grep -v '^\S*:[0-9]*: *//'; then
    echo "builder/src/solver must not use the frontend crate" >&2; exit 1
fi

step "build test binaries"
cargo build --workspace --locked --bins
cargo test --workspace --locked --no-run
cargo test --workspace --locked --no-run --message-format=json \
    | jq -r 'select(.reason=="compiler-artifact" and .profile.test==true and .executable!=null)
             | "\(.manifest_path)\t\(.executable)"' > "$ci_tmp/tests.tsv"
chmod -R a+rX "$target_dir"

step "doc tests"
cargo test --workspace --locked --doc

step "container engines for ci_engines.rs: a private dockerd and rootful podman service"
# On exit: stop the engines, and remove what the tests left in their TMPDIR
# (overlay work dirs the kernel made unremovable for the test user, stores
# whose image directories are read-only), so a CI machine's disk does not
# fill up run after run.
cleanup() {
    bash "$repo/.ci/engines.sh" stop
    find "$ci_tmp/tmp" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || true
}
trap cleanup EXIT
engine_env="$(bash "$repo/.ci/engines.sh" start)"
echo "$engine_env"
engine_var() { sed -n "s/^$1=//p" <<<"$engine_env"; }

run_as_user() {
    local dir=$1; shift
    (cd "$dir" && runuser -u "$user" -- env -i \
        HOME="$user_home" USER="$user" LOGNAME="$user" \
        PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        XDG_RUNTIME_DIR="/run/user/$uid" TMPDIR="$ci_tmp/tmp" LANG=C.UTF-8 \
        RUST_BACKTRACE=1 \
        STRATA_TEST_REGISTRY=127.0.0.1:5000 \
        STRATA_TEST_IMAGES=/var/tmp/peers-images \
        STRATA_SHARED="$shared" \
        STRATA_TEST_DOCKER=/usr/bin/docker \
        STRATA_TEST_DOCKER_HOST="$(engine_var STRATA_TEST_DOCKER_HOST)" \
        STRATA_TEST_PODMAN_URL="$(engine_var STRATA_TEST_PODMAN_URL)" \
        STRATA_TEST_PODMAN_ULIMITS="$(engine_var STRATA_TEST_PODMAN_ULIMITS)" \
        "$@")
}

step "all tests, as the unprivileged user $user"
passed=0; failed=0; ignored=0; broken=()
while IFS=$'\t' read -r manifest exe; do
    dir="$(dirname "$manifest")"
    name="${exe#"$repo"/}"
    echo "--- $name (in ${dir#"$repo"/})"
    log="$ci_tmp/$(basename "$exe").log"
    set +e
    run_as_user "$dir" "$exe" --include-ignored ${STRATA_TEST_FILTER:+"$STRATA_TEST_FILTER"} 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    line="$(grep -E '^test result: ' "$log" | tail -1 || true)"
    p="$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$line")"; p=${p:-0}
    f="$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line")"; f=${f:-0}
    i="$(sed -nE 's/.* ([0-9]+) ignored.*/\1/p' <<<"$line")"; i=${i:-0}
    passed=$((passed + p)); failed=$((failed + f)); ignored=$((ignored + i))
    if [ "$rc" -ne 0 ]; then
        broken+=("$name")
        [ "$f" -gt 0 ] || failed=$((failed + 1))
    fi
done < "$ci_tmp/tests.tsv"

echo
[ "${#broken[@]}" -eq 0 ] || printf 'failing test binaries: %s\n' "${broken[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "${#broken[@]}" -eq 0 ]
