#!/usr/bin/env bash
# Ratio and speed of `shuff compress` against `zstd -3` and `zstd -19` (single-threaded, as
# shipped by Debian) on the same safetensors files, with a bit-exact round trip of each.
# Usage: tools/compare_zstd.sh FILE.safetensors...   (prints a Markdown table)
set -euo pipefail
shuff=${SHUFF:-target/release/shuff}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
secs() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc -l; }
echo "| file | size | tool | ratio | compress MB/s | decompress MB/s |"
echo "|---|---:|---|---:|---:|---:|"
for f in "$@"; do
  size=$(stat -c %s "$f")
  name=$(basename "$f")
  row() { printf '| %s | %d MB | %s | %.3f | %.0f | %.0f |\n' "$name" $((size / 1000000)) "$1" "$(echo "$size / $2" | bc -l)" \
            "$(echo "$size / $3 / 1000000" | bc -l)" "$(echo "$size / $4 / 1000000" | bc -l)"; }
  # Best of three runs each, to keep page-cache and scheduling noise out.
  best() { local b=999999 t; for _ in 1 2 3; do t=$(secs "$@"); b=$(echo "if ($t < $b) $t else $b" | bc -l); done; echo "$b"; }
  tc=$(best "$shuff" compress -q -o "$tmp/x.shuff" "$f")
  td=$(best "$shuff" decompress -o "$tmp/x.st" "$tmp/x.shuff")
  cmp "$tmp/x.st" "$f"
  row "shuff compress" "$(stat -c %s "$tmp/x.shuff")" "$tc" "$td"
  for level in 3 19; do
    tc=$(best zstd -q -f -T1 -$level "$f" -o "$tmp/x.zst")
    td=$(best zstd -q -f -d "$tmp/x.zst" -o "$tmp/x.st")
    cmp "$tmp/x.st" "$f"
    row "zstd -$level" "$(stat -c %s "$tmp/x.zst")" "$tc" "$td"
  done
done
