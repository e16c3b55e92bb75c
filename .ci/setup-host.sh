#!/usr/bin/env bash
# Machine setup for the test suite, as root, idempotent: the Debian packages
# the tests call, the unprivileged user `builder` with a subordinate id range
# (/etc/subuid, /etc/subgid) and its runtime directory, and the per-user
# containers configuration podman/buildah need on a host without systemd.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root

# What the tests run: skopeo/umoci/podman/buildah check strata's output,
# uidmap gives newuidmap/newgidmap (the sandbox's full id range),
# docker-registry is the local registry, busybox-static, debootstrap and
# curl make the base images, git is ADD <git repository>, jq reads JSON.
PKGS=(buildah podman skopeo umoci uidmap fuse-overlayfs docker-registry busybox-static
      slirp4netns runc debootstrap jq curl git ca-certificates netavark aardvark-dns
      containernetworking-plugins golang-github-containers-common)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "all packages already installed"
fi
# The packaged registry service would take :5000; registry.sh runs its own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

if ! id "$BUILDER_USER" >/dev/null 2>&1; then
    log "creating user $BUILDER_USER"
    useradd -m -s /bin/bash "$BUILDER_USER"
fi
for f in /etc/subuid /etc/subgid; do
    touch "$f"
    if ! grep -q "^$BUILDER_USER:" "$f"; then
        # A 65536-id range above every range already given out.
        start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' "$f")
        echo "$BUILDER_USER:$start:65536" >> "$f"
        log "added $BUILDER_USER:$start:65536 to $f"
    fi
done
uid="$(builder_uid)"
install -d -m 700 -o "$BUILDER_USER" -g "$BUILDER_USER" "/run/user/$uid"

# podman/buildah as the test user: plain HTTP for the local registry, runc
# and cgroupfs (no systemd here; crun refuses hybrid cgroup hosts), the host
# network (rootless bridge networking needs what CI hosts lack).
home="$(getent passwd "$BUILDER_USER" | cut -d: -f6)"
conf="$home/.config/containers"
install -d -o "$BUILDER_USER" -g "$BUILDER_USER" "$home/.config" "$conf"
cat > "$conf/registries.conf" <<CONF
# written by strata's .ci/setup-host.sh: the local test registry is plain HTTP.
unqualified-search-registries = ["$REGISTRY_ADDR"]

[[registry]]
location = "$REGISTRY_ADDR"
insecure = true
CONF
cat > "$conf/containers.conf" <<'CONF'
# written by strata's .ci/setup-host.sh
[containers]
netns = "host"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
[ -f "$conf/storage.conf" ] || printf '[storage]\ndriver = "overlay"\n' > "$conf/storage.conf"
chown -R "$BUILDER_USER:$BUILDER_USER" "$conf"
log "user $BUILDER_USER ($uid): $(grep "^$BUILDER_USER:" /etc/subuid)"
