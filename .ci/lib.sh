# shellcheck shell=bash
# Settings and helpers shared by the machine-setup scripts in .ci/ (sourced,
# not run). The paths are what the tests read: STRATA_TEST_REGISTRY
# (127.0.0.1:5000) and STRATA_TEST_IMAGES (/var/tmp/peers-images).

CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILDER_USER="${BUILDER_USER:-builder}"
REGISTRY_ADDR="${REGISTRY_ADDR:-127.0.0.1:5000}"
REGISTRY_STORAGE="${REGISTRY_STORAGE:-/var/tmp/peers-registry}"
IMAGES_DIR="${IMAGES_DIR:-/var/tmp/peers-images}"
# The base images' file and config times (2025-01-01T00:00:00Z), so that a
# rebuilt base image has the same layer contents.
BASE_IMAGE_EPOCH="${BASE_IMAGE_EPOCH:-1735689600}"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "run this as root"; }
builder_uid() { id -u "$BUILDER_USER"; }
registry_up() { curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; }
