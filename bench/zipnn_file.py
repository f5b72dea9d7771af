"""ZipNN on a whole file, for bench/files.sh: `zipnn_file.py c|d IN OUT THREADS` (bf16 byte
grouping, its default zstd/Huffman choice, the given threads)."""
import sys

from zipnn import ZipNN

mode, src, dst, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
z = ZipNN(bytearray_dtype="bfloat16", threads=threads)
data = open(src, "rb").read()
out = z.compress(data) if mode == "c" else z.decompress(data)
open(dst, "wb").write(out)
