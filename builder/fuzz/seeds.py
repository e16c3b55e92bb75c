#!/usr/bin/env python3
"""Fills corpus/dockerignore and corpus/options from the shared corpus
($STRATA_SHARED/corpus, default ../../../shared/corpus): pattern lists with
their paths (patterns, NUL, paths) and every --mount / --device / --chmod
input."""
import json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
shared = os.environ.get("STRATA_SHARED", "/work/shared")
corpus = os.path.join(shared, "corpus")
ign = os.path.join(here, "corpus", "dockerignore")
opt = os.path.join(here, "corpus", "options")
os.makedirs(ign, exist_ok=True)
os.makedirs(opt, exist_ok=True)

n = 0
for line in open(os.path.join(corpus, "dockerignore", "patternmatcher-cases.tsv"), encoding="utf-8"):
    if line.startswith("#"):
        continue
    cols = line.rstrip("\n").split("\t")
    if len(cols) < 6:
        continue
    path, patterns = cols[3], cols[5:]
    open(os.path.join(ign, f"{n}"), "w", encoding="utf-8").write("\n".join(patterns) + "\0" + path)
    n += 1

m = 0
def inputs(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "input" and isinstance(x, str):
                yield x
            else:
                yield from inputs(x)
    elif isinstance(v, list):
        for x in v:
            yield from inputs(x)
for s in set(inputs(json.load(open(os.path.join(corpus, "runmount", "cases.json"))))):
    open(os.path.join(opt, f"{m}"), "w", encoding="utf-8").write(s)
    m += 1
for s in ["0755", "u+x,go-w", "a=rX", "u=rwx,g=rx,o=", "+t", "g+s", "u=g", "7777", "99999"]:
    open(os.path.join(opt, f"{m}"), "w").write(s)
    m += 1
print(f"dockerignore seeds: {n}, option seeds: {m}", file=sys.stderr)
