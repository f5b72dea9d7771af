"""shuff against huff0, as README "Speed" reports it: `shuff bench --json` run RUNS times per
codebook set on one pinned core (each run already times its coders in turns), then the median of
the runs for every figure, printed as the README's table. A shared machine's speed drifts between
runs; the ratios to huff0, taken within each run, are what to compare.

    python bench/huff0_medians.py --class ffn1_act --input STEP.safetensors BOOK_BYTES.json BOOK_EXPONENT.json   (JSON sets)
        [--runs 3] [--samples 21] [--cpu 1] [--shuff target/release/shuff]
"""
import argparse
import json
import statistics
import subprocess

FIELDS = ["shuff_encode_gbps", "shuff_decode_gbps", "huff0_encode_gbps", "huff0_decode_gbps", "encode_vs_huff0", "decode_vs_huff0"]


def size_name(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("books", nargs="+", help="codebook sets (one per layout)")
    ap.add_argument("--class", dest="cls", required=True)
    ap.add_argument("--input", required=True, help="safetensors file with the class's tensors (a held-out step)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=21)
    ap.add_argument("--cpu", default="1", help="core to pin to (taskset -c)")
    ap.add_argument("--shuff", default="target/release/shuff")
    a = ap.parse_args()
    print("| layout | size | threads | shuff encode | shuff decode | huff0 encode | huff0 decode | encode × huff0 | decode × huff0 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for book in a.books:
        layout = next(iter(json.load(open(book))["classes"].values()))["layout"]
        runs: dict[int, list[dict]] = {}
        for _ in range(a.runs):
            out = subprocess.run(["taskset", "-c", a.cpu, a.shuff, "bench", "--json", "--samples", str(a.samples), "--book", book,
                                  "--class", a.cls, a.input], capture_output=True, text=True, check=True).stdout
            for row in json.loads(out):
                runs.setdefault(row["size"], []).append(row)
        for size, rows in runs.items():
            m = {f: statistics.median(r[f] for r in rows) for f in FIELDS}
            print(f"| {layout} | {size_name(size)} | 1 | {m['shuff_encode_gbps']:.2f} GB/s | {m['shuff_decode_gbps']:.2f} GB/s | "
                  f"{m['huff0_encode_gbps']:.2f} GB/s | {m['huff0_decode_gbps']:.2f} GB/s | {m['encode_vs_huff0']:.2f}× | {m['decode_vs_huff0']:.2f}× |")


if __name__ == "__main__":
    main()
