#!/usr/bin/env bash
# The tests' base images, built offline as root and served by the local
# registry (registry.sh):
#   busybox:latest          Debian's busybox-static + applet symlinks + /etc/passwd
#   debian:bookworm-slim    debootstrap --variant=minbase from the Debian mirror in
#                           apt's sources, slimmed like the official -slim images
# Each is packaged with umoci as an OCI layout, pushed to the registry and
# exported as a docker-archive with skopeo:
#   $IMAGES_DIR/oci/<name>                 OCI image layout (tag = image tag)
#   $IMAGES_DIR/<name>-<tag>.docker.tar    docker-archive (RepoTags = registry name)
#   $REGISTRY_ADDR/library/<name>:<tag>
#
#   .ci/base-images.sh [busybox] [debian]   (both by default)
#   FORCE=1 .ci/base-images.sh              rebuild an existing layout
# Idempotent: an existing OCI layout is reused; push and export are redone.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root

WHAT=("$@"); [ ${#WHAT[@]} -gt 0 ] || WHAT=(busybox debian)
BUILD="$IMAGES_DIR/build"
CREATED="$(date -u -d "@$BASE_IMAGE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$IMAGES_DIR/oci" "$BUILD"
chmod 755 "$IMAGES_DIR" "$IMAGES_DIR/oci"

bash "$CI_DIR/registry.sh"

# clamp mtimes so repeated builds give identical layer contents where possible
clamp_mtimes() { find "$1" -newermt "@$BASE_IMAGE_EPOCH" -exec touch -h -d "@$BASE_IMAGE_EPOCH" {} + ; }

# package_rootfs ROOTFS NAME TAG CMD
package_rootfs() {
    local rootfs=$1 name=$2 tag=$3 cmd=$4
    local layout="$IMAGES_DIR/oci/$name" bundle="$BUILD/$name-bundle"
    rm -rf "$layout" "$bundle"
    umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    umoci unpack --image "$layout:$tag" "$bundle"
    cp -a "$rootfs/." "$bundle/rootfs/"
    umoci repack --image "$layout:$tag" --history.created "$CREATED" \
        --history.created_by "strata .ci/base-images.sh ($name rootfs)" "$bundle"
    umoci config --image "$layout:$tag" --created "$CREATED" --author "strata-ci" \
        --os linux --architecture amd64 \
        --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --config.cmd "$cmd" --no-history
    umoci gc --layout "$layout"
    rm -rf "$bundle"
    chmod -R a+rX "$layout"
}

# publish NAME TAG : push OCI layout to registry + docker-archive export
publish() {
    local name=$1 tag=$2
    local layout="$IMAGES_DIR/oci/$name" ref="$REGISTRY_ADDR/library/$name:$tag"
    local tarball="$IMAGES_DIR/$name-$tag.docker.tar"
    log "push oci:$layout:$tag -> docker://$ref"
    skopeo copy --quiet --dest-tls-verify=false "oci:$layout:$tag" "docker://$ref"
    log "export -> docker-archive:$tarball"
    rm -f "$tarball"
    skopeo copy --quiet "oci:$layout:$tag" "docker-archive:$tarball:$ref"
    chmod a+r "$tarball"
    skopeo inspect --tls-verify=false "docker://$ref" | jq -c '{Digest, Layers: (.Layers|length), Architecture, Os}'
    skopeo inspect "docker-archive:$tarball" | jq -c '{RepoTags, Layers: (.Layers|length)}'
}

build_busybox() {
    local layout="$IMAGES_DIR/oci/busybox"
    if [ -z "${FORCE:-}" ] && [ -f "$layout/index.json" ]; then
        log "busybox OCI layout exists ($layout); FORCE=1 to rebuild"
    else
        local r="$BUILD/busybox-rootfs"
        rm -rf "$r"
        mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp,home,dev,proc,sys}
        install -m 0755 /bin/busybox "$r/bin/busybox"
        # applet symlinks at the paths busybox itself reports (bin/sh, usr/bin/awk, ...)
        /bin/busybox --list-full | while read -r p; do
            [ "$p" = bin/busybox ] && continue
            mkdir -p "$r/$(dirname "$p")"
            ln -sf /bin/busybox "$r/$p"
        done
        chmod 1777 "$r/tmp" "$r/var/tmp"; chmod 700 "$r/root"
        cat > "$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
        cat > "$r/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
        echo 'hosts: files dns' > "$r/etc/nsswitch.conf"
        clamp_mtimes "$r"
        log "busybox rootfs: $(find "$r" | wc -l) entries, $(du -sh "$r" | cut -f1)"
        package_rootfs "$r" busybox latest sh
    fi
    publish busybox latest
}

# first http(s) URI of the Debian main archive from apt's sources (deb822 or one-line)
debian_mirror() {
    local u
    u=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v security | head -1 || true)
    if [ -z "$u" ] && [ -f /etc/apt/sources.list ]; then
        u=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "$u"
}

build_debian() {
    local layout="$IMAGES_DIR/oci/debian"
    if [ -z "${FORCE:-}" ] && [ -f "$layout/index.json" ]; then
        log "debian OCI layout exists ($layout); FORCE=1 to rebuild"
    else
        local mirror r="$BUILD/debian-rootfs"
        mirror=$(debian_mirror); [ -n "$mirror" ] || die "no Debian mirror found in apt sources"
        curl -fsS -o /dev/null "$mirror/dists/bookworm/Release" || die "Debian mirror not reachable"
        rm -rf "$r"
        log "debootstrap --variant=minbase bookworm (from the Debian mirror in apt sources)"
        debootstrap --variant=minbase --arch=amd64 bookworm "$r" "$mirror" > "$BUILD/debootstrap.log" 2>&1 \
            || { tail -30 "$BUILD/debootstrap.log" >&2; die "debootstrap failed"; }
        # --- slimify (same idea as the official *-slim images) ---
        cat > "$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
        find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
        rm -rf "$r"/usr/share/{man,groff,info,lintian,linda}/*
        find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
        cat > "$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
        echo 'Acquire::Languages "none";' > "$r/etc/apt/apt.conf.d/docker-no-languages"
        echo 'APT::AutoRemove::SuggestsImportant "false";' > "$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
        # apt sources: same as the host's (the Debian mirror), deb822 style
        rm -f "$r/etc/apt/sources.list"
        mkdir -p "$r/etc/apt/sources.list.d"
        if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
            cp /etc/apt/sources.list.d/debian.sources "$r/etc/apt/sources.list.d/debian.sources" 2>/dev/null || true
        fi
        rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin \
               "$r"/var/cache/ldconfig/aux-cache "$r"/var/log/*.log "$r"/var/log/apt/* \
               "$r"/tmp/* "$r"/var/tmp/* "$r"/root/.bash_history
        rm -rf "$r"/dev/* "$r"/proc/* "$r"/sys/*
        : > "$r/etc/machine-id"; echo localhost > "$r/etc/hostname"; : > "$r/etc/resolv.conf"
        clamp_mtimes "$r"
        log "debian rootfs: $(du -sh "$r" | cut -f1)"
        package_rootfs "$r" debian bookworm-slim bash
        rm -rf "$r"
    fi
    publish debian bookworm-slim
}

for w in "${WHAT[@]}"; do
    case "$w" in
        busybox) build_busybox ;;
        debian)  build_debian ;;
        *) die "unknown image '$w' (busybox|debian)" ;;
    esac
done
log "catalog: $(curl -fsS "http://$REGISTRY_ADDR/v2/_catalog")"
