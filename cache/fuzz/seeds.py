#!/usr/bin/env python3
"""Fills corpus/layer and corpus/image_json with small seeds: hand-made
tars (every entry kind, whiteouts, escapes, PAX, gzip) and the JSON blobs
(manifests, indexes, configs) of the OCI layouts in $STRATA_TEST_IMAGES
(default /var/tmp/peers-images)."""
import gzip, io, json, os, sys, tarfile

here = os.path.dirname(os.path.abspath(__file__))
layer_dir = os.path.join(here, "corpus", "layer")
json_dir = os.path.join(here, "corpus", "image_json")
os.makedirs(layer_dir, exist_ok=True)
os.makedirs(json_dir, exist_ok=True)

def tar_of(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            if kind == tarfile.REGTYPE:
                ti.size = len(arg)
                t.addfile(ti, io.BytesIO(arg))
                continue
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname = arg
            if kind == tarfile.DIRTYPE:
                ti.mode = 0o755
            t.addfile(ti)
    return buf.getvalue()

R, D, S, H = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
seeds = {
    "plain": [("d", D, None), ("d/f", R, b"hello"), ("d/l", S, "f"), ("d/h", H, "d/f")],
    "whiteouts": [("d", D, None), ("d/.wh.gone", R, b""), ("d/.wh..wh..opq", R, b"")],
    "escapes": [("../up", R, b"x"), ("/abs", R, b"x"), ("l", S, "/"), ("l/etc/x", R, b"x"),
                ("h", H, "../../etc/passwd"), ("d/../../x", R, b"x")],
    "pax": [("p" * 200, R, b"long name"), ("s", S, "t" * 150)],
}
for name, entries in seeds.items():
    fmt = tarfile.PAX_FORMAT if name == "pax" else tarfile.GNU_FORMAT
    data = tar_of(entries, fmt)
    open(os.path.join(layer_dir, name + ".tar"), "wb").write(data)
    open(os.path.join(layer_dir, name + ".tar.gz"), "wb").write(gzip.compress(data))

images = os.environ.get("STRATA_TEST_IMAGES", "/var/tmp/peers-images")
n = 0
for root, _, files in os.walk(os.path.join(images, "oci")):
    for f in files:
        p = os.path.join(root, f)
        if os.path.getsize(p) > 16384:
            continue
        data = open(p, "rb").read()
        try:
            json.loads(data)
        except Exception:
            continue
        open(os.path.join(json_dir, f"{n}.json"), "wb").write(data)
        n += 1
print(f"layer seeds: {len(seeds) * 2}, json seeds: {n}", file=sys.stderr)
