#!/usr/bin/env bash
# Reports Rust files over a line limit and functions over a length limit,
# and fails if there are any: `.ci/sizes.sh [dir] [max-file-lines] [max-fn-lines]`
# (default builder/src, 600, 120). A function runs from its `fn` line to the
# first line that closes it at the same indentation (rustfmt's layout).
set -euo pipefail
dir=${1:-builder/src}
max_file=${2:-600}
max_fn=${3:-120}
bad=0
while IFS= read -r f; do
    n=$(wc -l <"$f")
    if [ "$n" -gt "$max_file" ]; then
        echo "file $f: $n lines (over $max_file)"
        bad=1
    fi
    out=$(awk -v max="$max_fn" -v file="$f" '
        !infn && match($0, /^ *((pub(\([a-z:]+\))? )?(const )?(async )?(unsafe )?(extern "C" )?fn [A-Za-z0-9_]+)/) {
            indent = match($0, /[^ ]/) - 1
            name = $0; sub(/^ *([a-z(): ]+ )?fn /, "", name); sub(/[<(].*/, "", name)
            start = NR; pad = sprintf("%" indent "s", "")
            if ($0 ~ /}$/ && $0 ~ /\{/) next   # one-line fn
            infn = 1; next
        }
        infn && $0 == pad "}" {
            len = NR - start + 1
            if (len > max) { printf "fn %s:%d %s: %d lines (over %d)\n", file, start, name, len, max }
            infn = 0
        }' "$f")
    if [ -n "$out" ]; then
        echo "$out"
        bad=1
    fi
done < <(find "$dir" -name '*.rs' | sort)
if [ "$bad" -eq 0 ]; then
    echo "sizes: every file in $dir within $max_file lines, every function within $max_fn"
fi
exit "$bad"
