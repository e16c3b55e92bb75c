#!/usr/bin/env bash
# Layer export and blob hashing, strata against the usual pipelines, on the
# same data in one run. Prints a markdown table (paste it into BENCHMARKS.md).
#
#   bash cache/benches/export_vs_tar.sh [DATA_DIR] [SIZE_MIB]
#
# DATA_DIR (default /var/tmp/strata-layer-bench/tree) is generated once:
# SIZE_MIB (default 1024) of real binaries from /usr/lib and /usr/bin,
# concatenated into files of 8 KiB .. 24 MiB, so it compresses like a real
# rootfs. Every tool reads it from the page cache (one warm-up pass first).
# Each command runs under `/usr/bin/time -f '%e %M'` (wall seconds, peak RSS
# KiB; for a pipeline, the largest process of it). MB = 10^6 bytes of the
# uncompressed tar stream per wall second.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
data="${1:-/var/tmp/strata-layer-bench/tree}"
size_mib="${2:-1024}"
work="$(dirname "$data")/out"
mkdir -p "$work"

if [ ! -f "$data/.complete" ]; then
    echo "generating $size_mib MiB under $data ..." >&2
    rm -rf "$data"; mkdir -p "$data"
    python3 - "$data" "$size_mib" <<'PY'
import os, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
sizes = [8 << 10, 64 << 10, 512 << 10, 4 << 20, 24 << 20, 32 << 10, 1 << 20]
srcs = []
for top in ("/usr/lib", "/usr/bin"):
    for d, _, files in os.walk(top):
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 4096:
                srcs.append(p)
srcs.sort()
written, n, si = 0, 0, 0
out, want, have = None, 0, 0
for p in srcs:
    try:
        data = open(p, "rb").read()
    except OSError:
        continue
    while data and written < total:
        if out is None:
            sub = os.path.join(root, "d%02d" % (n % 23), "s%d" % (n % 7))
            os.makedirs(sub, exist_ok=True)
            out = open(os.path.join(sub, "f%05d.bin" % n), "wb")
            want, have = sizes[si % len(sizes)], 0
            si += 1; n += 1
        take = min(len(data), want - have, total - written)
        out.write(data[:take]); data = data[take:]
        have += take; written += take
        if have >= want:
            out.close(); out = None
    if written >= total:
        break
if out: out.close()
print(f"{n} files, {written} bytes", file=sys.stderr)
PY
    touch "$data/.complete"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
echo "building the bench binary (release) ..." >&2
bin="$(cd "$repo" && cargo bench -p cache --bench layer_export --no-run --message-format=json 2>/dev/null \
    | jq -r 'select(.reason=="compiler-artifact" and .target.name=="layer_export" and .executable!=null) | .executable' | tail -1)"
[ -x "$bin" ] || { echo "could not build the layer_export bench" >&2; exit 1; }

# Warm the page cache and measure the tar stream size (what MB/s refers to).
tar -C "$data" --exclude=./.complete -cf "$work/plain.tar" .
tar_bytes=$(stat -c %s "$work/plain.tar")

# Every command runs ROUNDS times (default 2), the commands interleaved so
# that each sees the same mix of load from whatever else runs on the machine;
# the table shows the best (lowest wall time) round of each, and all rounds
# are logged to stderr.
rounds="${ROUNDS:-2}"
declare -A best_secs best_kib best_out
names=()
measure() { # name, output file, command...
    local name=$1 out=$2; shift 2
    local t secs kib osize="-"
    t=$( { /usr/bin/time -f '%e %M' "$@" >/dev/null; } 2>&1 | tail -1 )
    secs=${t% *}; kib=${t#* }
    [ -f "$out" ] && osize=$(stat -c %s "$out")
    echo "round $r: $name: ${secs}s peak ${kib} KiB out=$osize load $(cut -d' ' -f1 /proc/loadavg)" >&2
    if [ -z "${best_secs[$name]:-}" ]; then names+=("$name"); fi
    if [ -z "${best_secs[$name]:-}" ] || awk -v a="$secs" -v b="${best_secs[$name]}" 'BEGIN { exit !(a < b) }'; then
        best_secs[$name]=$secs; best_kib[$name]=$kib; best_out[$name]=$osize
    fi
}

cd "$work"
for r in $(seq 1 "$rounds"); do
    measure "tar -c \| gzip -6" tar.gz bash -c "tar -C '$data' --exclude=./.complete -cf - . | gzip -6 > tar.gz"
    measure "strata export gzip-6 (zlib-rs, 8 MiB members)" strata.tar.gz "$bin" export "$data" gzip strata.tar.gz
    measure "tar -c \| zstd -3 -T0" tar.zst bash -c "tar -C '$data' --exclude=./.complete -cf - . | zstd -q -3 -T0 > tar.zst"
    measure "strata export zstd-3 (zstdmt)" strata.tar.zst "$bin" export "$data" zstd strata.tar.zst
    measure "openssl dgst -sha256 (1 blob)" none openssl dgst -sha256 plain.tar
    measure "strata blob hash (ring, SHA-NI, 64 KiB reads)" none "$bin" hash plain.tar
    measure "strata export uncompressed" strata.tar "$bin" export "$data" none strata.tar
done
rows=()
for name in "${names[@]}"; do
    secs=${best_secs[$name]}; kib=${best_kib[$name]}
    mbs=$(awk -v b="$tar_bytes" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? b / s / 1e6 : 0) }')
    rows+=("| $name | $secs | $mbs | $((kib / 1024)) | ${best_out[$name]} |")
done

# Cross-check with independent decoders: the strata blobs decode to a tar
# whose sha256 is the diff_id strata printed (checked by the bench itself
# writing *.desc), and gzip/zstd accept them.
gzip -t strata.tar.gz && zstd -q -t strata.tar.zst
for f in strata.tar.gz strata.tar.zst; do
    want=$(sed -n 's/^diff_id //p' "$f.desc")
    got="sha256:$( (case $f in *.gz) gzip -dc "$f";; *) zstd -qdc "$f";; esac) | sha256sum | cut -d' ' -f1)"
    [ "$want" = "$got" ] || { echo "$f: diff_id $want but decompressed stream hashes to $got" >&2; exit 1; }
    want=$(sed -n 's/^digest //p' "$f.desc")
    got="sha256:$(sha256sum "$f" | cut -d' ' -f1)"
    [ "$want" = "$got" ] || { echo "$f: digest $want but file hashes to $got" >&2; exit 1; }
done
echo "digests cross-checked with gzip -dc / zstd -dc | sha256sum" >&2

echo
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Data: $(find "$data" -type f | wc -l) files, tar stream $tar_bytes bytes"
echo
echo "Best of $rounds interleaved rounds."
echo
echo "| command | wall s | MB/s (tar bytes) | peak RSS MiB | output bytes |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
