// shuff's device coder: the per-thread logic of the GPU encoder and decoder of frame format v2
// (docs/FORMAT.md). Every function here is `__host__ __device__`: kernels.cu wraps them in CUDA
// kernels, host_emulation.cpp in plain loops over the same thread indices, so the tests check this
// exact code bit for bit against the Rust coder on machines without a GPU.
//
// Work is split the way the frame is: a message is cut into 64 KiB chunks, each symbol stream of a
// chunk into `lanes` lanes. One thread handles lane j of one chunk for *every* stream of the
// layout: it reads the lane's elements once, and writes (or decodes) one bitstream per stream.
//
// Encoding takes three launches (the output offsets depend on the coded sizes):
//   1. encode_count:  thread (chunk, lane): coded bits of its lane in each stream, constant test;
//   2. encode_plan:   thread (chunk): each stream's mode (coded / raw / constant), offsets of
//                     lanes and streams inside the chunk, the chunk's size;
//      (the host takes an exclusive prefix sum of chunk sizes: chunk start offsets)
//   3. encode_write:  thread (chunk, lane): writes its lanes, raw bytes, lane sizes, and (lane 0)
//                     the mode byte, constant symbols and the chunk-table entry.
// Decoding takes two: decode_plan (thread per chunk: validates the chunk and finds its streams and
// lanes) and decode (thread per (chunk, lane)). Every offset read from the frame is checked against
// the chunk and the frame; an error is reported through `error`, never by reading out of bounds.

#pragma once

#if defined(__CUDACC_RTC__)
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef unsigned long long uintptr_t;
#define SHUFF_HD __host__ __device__ __forceinline__
#elif defined(__CUDACC__)
#include <stdint.h>
#define SHUFF_HD __host__ __device__ __forceinline__
#else
#include <stdint.h>
#include <string.h>
#define SHUFF_HD static inline
#endif

#define SHUFF_CHUNK_BYTES 65536u
#define SHUFF_MAX_STREAMS 4
#define SHUFF_DECODE_BITS 12
#define SHUFF_MODE_CODED 0u
#define SHUFF_MODE_RAW 1u
#define SHUFF_MODE_CONSTANT 2u

// Error codes written to `error` (the first one seen wins on the device; any one on the host).
#define SHUFF_ERR_CHUNK_SIZE 1u     // a chunk's size is inconsistent with the frame
#define SHUFF_ERR_MODE 2u           // unknown mode, or mode bits for missing streams
#define SHUFF_ERR_STREAM_SIZE 3u    // a stream or its lanes run past the chunk
#define SHUFF_ERR_TRAILING 4u       // bytes after a chunk's last stream
#define SHUFF_ERR_LANE_END 5u       // a lane did not end inside its last byte
#define SHUFF_ERR_BAD_CODE 6u       // bits that start no code

// One stream's tables: the record `shuff::device::stream_tables` writes (crates/shuff/src/device.rs).
struct StreamTables {
    uint32_t enc[256];     // LSB-first code | length << 16
    uint16_t dec[1 << SHUFF_DECODE_BITS];  // symbol | length << 8; length 0: longer code
    uint32_t first[17];    // canonical long-code tables, per length
    uint32_t count[17];
    uint32_t offset[17];
    uint8_t sorted[256];
    uint32_t max_len;
    uint32_t flat;
    uint8_t pad[44];
};

// Where chunk `c` lies, and its symbols per stream.
struct ChunkGeom {
    uint64_t start;   // first tensor byte
    uint32_t bytes;   // tensor bytes in the chunk
    uint32_t n;       // symbols per stream (= units: bytes / k)
};

SHUFF_HD ChunkGeom chunk_geom(uint64_t total, uint32_t k, uint64_t c) {
    ChunkGeom g;
    g.start = c * SHUFF_CHUNK_BYTES;
    uint64_t left = total - g.start;
    g.bytes = (uint32_t)(left < SHUFF_CHUNK_BYTES ? left : SHUFF_CHUNK_BYTES);
    g.n = g.bytes / k;
    return g;
}

// Lane j of `lanes` over n symbols: every lane n / lanes symbols, the last also the remainder.
SHUFF_HD void lane_span(uint32_t n, uint32_t lanes, uint32_t j, uint32_t* start, uint32_t* len) {
    uint32_t q = n / lanes;
    *start = j * q;
    *len = (j + 1 == lanes) ? n - j * q : q;
}

// ---- element <-> symbols ---------------------------------------------------------------------
// A unit is what yields one symbol per stream: a byte for one-stream layouts, an element for
// planes/exponent (k = element size). `rotate` is the exponent layout's rotate-left-by-1.

SHUFF_HD uint32_t unit_mask(uint32_t k) { return k == 4 ? 0xffffffffu : ((1u << (8 * k)) - 1); }

SHUFF_HD uint32_t to_symbols(uint32_t unit, uint32_t k, uint32_t rotate) {
    if (rotate) {
        if (k == 2) unit = ((unit << 1) | (unit >> 15)) & 0xffffu;
        else if (k == 4) unit = (unit << 1) | (unit >> 31);
    }
    return unit;  // symbol of stream s = byte s
}

SHUFF_HD uint32_t from_symbols(uint32_t syms, uint32_t k, uint32_t rotate) {
    if (rotate) {
        if (k == 2) syms = ((syms >> 1) | (syms << 15)) & 0xffffu;
        else if (k == 4) syms = (syms >> 1) | (syms << 31);
    }
    return syms;
}

// ---- memory access ----------------------------------------------------------------------------

#ifndef SHUFF_WIDE
#define SHUFF_WIDE 1
#endif
#if SHUFF_WIDE
// 16-byte accesses: each thread streams through its own lane, so a warp's access touches 32
// different sectors; 16 bytes per access instead of 4 quarters the memory transactions per byte.
struct Wide {
    uint64_t lo, hi;
};

SHUFF_HD Wide load_16_aligned(const uint8_t* p) {
    Wide w;
#if defined(__CUDA_ARCH__)
    uint4 v = *(const uint4*)p;
    w.lo = (uint64_t)v.x | ((uint64_t)v.y << 32);
    w.hi = (uint64_t)v.z | ((uint64_t)v.w << 32);
#else
    memcpy(&w.lo, p, 8);  // little-endian hosts only (x86-64, aarch64)
    memcpy(&w.hi, p + 8, 8);
#endif
    return w;
}

SHUFF_HD void store_16_aligned(uint8_t* p, uint64_t lo, uint64_t hi) {
#if defined(__CUDA_ARCH__)
    *(uint4*)p = make_uint4((uint32_t)lo, (uint32_t)(lo >> 32), (uint32_t)hi, (uint32_t)(hi >> 32));
#else
    memcpy(p, &lo, 8);
    memcpy(p + 8, &hi, 8);
#endif
}

SHUFF_HD int aligned16(const uint8_t* p) { return (((uintptr_t)p) & 15) == 0; }

// Reads units of k bytes in order from [p, end): 16-byte aligned loads where the position allows
// (lanes of power-of-two counts start 16-aligned in aligned tensors), bytes otherwise.
struct UnitSource {
    const uint8_t* p;
    const uint8_t* end;
    uint64_t lo, hi;  // the next `left` bytes, low byte first
    uint32_t left;
};

SHUFF_HD UnitSource unit_source(const uint8_t* p, const uint8_t* end) {
    UnitSource s;
    s.p = p;
    s.end = end;
    s.lo = s.hi = 0;
    s.left = 0;
    return s;
}

SHUFF_HD uint32_t next_unit(UnitSource* s, uint32_t k) {
    if (s->left == 0) {
        if (aligned16(s->p) && s->p + 16 <= s->end) {
            Wide w = load_16_aligned(s->p);
            s->lo = w.lo;
            s->hi = w.hi;
            s->p += 16;
            s->left = 16;
        } else {
            uint64_t w = 0;
            for (uint32_t b = 0; b < k; b++) w |= (uint64_t)s->p[b] << (8 * b);
            s->lo = w;
            s->hi = 0;
            s->p += k;
            s->left = k;
        }
    }
    uint32_t u = (uint32_t)s->lo & unit_mask(k);
    uint32_t bits = 8 * k;  // 8, 16 or 32: shifts stay below 64
    s->lo = (s->lo >> bits) | (s->hi << (64 - bits));
    s->hi >>= bits;
    s->left -= k;
    return u;
}

// Writes an LSB-first bitstream (or raw bytes, as 8-bit codes) from p on: whole bytes until p is
// 16-aligned, then 32-bit words gathered four at a time into 16-byte stores. Only bytes that hold
// bits are written, so neighbouring lanes, which own the bytes around, are never touched.
struct BitSink {
    uint8_t* p;
    uint64_t acc;
    uint32_t n;       // pending bits in acc, < 32 between calls
    uint64_t qlo, qhi;
    uint32_t qn;      // 32-bit words queued in qlo/qhi (0..3), to be stored at p
};

SHUFF_HD BitSink bit_sink(uint8_t* p) {
    BitSink s;
    s.p = p;
    s.acc = 0;
    s.n = 0;
    s.qlo = s.qhi = 0;
    s.qn = 0;
    return s;
}

SHUFF_HD void put_bits(BitSink* s, uint32_t bits, uint32_t len) {
    s->acc |= (uint64_t)bits << s->n;
    s->n += len;
    if (s->n >= 32) {
        while (s->qn == 0 && !aligned16(s->p) && s->n >= 8) {
            *s->p++ = (uint8_t)s->acc;
            s->acc >>= 8;
            s->n -= 8;
        }
        if (aligned16(s->p) && s->n >= 32) {
            uint64_t w = (uint32_t)s->acc;
            s->acc >>= 32;
            s->n -= 32;
            if (s->qn == 0) s->qlo = w;
            else if (s->qn == 1) s->qlo |= w << 32;
            else if (s->qn == 2) s->qhi = w;
            else {
                store_16_aligned(s->p, s->qlo, s->qhi | (w << 32));
                s->p += 16;
            }
            s->qn = (s->qn + 1) & 3;
        }
    }
}

// Writes the queued words and pending bits, the last byte padded with zeros.
SHUFF_HD void finish_bits(BitSink* s) {
    for (uint32_t i = 0; i < 4 * s->qn; i++) {
        *s->p++ = (uint8_t)(i < 8 ? s->qlo >> (8 * i) : s->qhi >> (8 * (i - 8)));
    }
    s->qn = 0;
    while (s->n > 0) {
        *s->p++ = (uint8_t)s->acc;
        s->acc >>= 8;
        s->n = s->n >= 8 ? s->n - 8 : 0;
    }
}

// Reads an LSB-first lane [p, end): bytes until p is 16-aligned, then 16-byte loads staged in
// (lo, hi) and fed to the bit buffer 32 bits at a time. Past the end it reads zeros and counts
// them, so that the final check can tell a lane that needed more bits than it has.
struct BitSource {
    const uint8_t* start;
    const uint8_t* p;
    const uint8_t* end;
    uint64_t acc;
    uint32_t n;        // valid bits in acc
    uint32_t phantom;  // zero bits read past the end
    uint64_t lo, hi;   // staged bits, loaded but not yet in acc
    uint32_t staged;   // their count: 0, 32, 64, 96 or 128
};

SHUFF_HD BitSource bit_source(const uint8_t* p, const uint8_t* end) {
    BitSource s;
    s.start = p;
    s.p = p;
    s.end = end;
    s.acc = 0;
    s.n = 0;
    s.phantom = 0;
    s.lo = s.hi = 0;
    s.staged = 0;
    return s;
}

// Tops up to more than 32 valid bits.
SHUFF_HD void refill(BitSource* s) {
    while (s->n <= 32) {
        if (s->staged == 0 && aligned16(s->p) && s->p + 16 <= s->end) {
            Wide w = load_16_aligned(s->p);
            s->lo = w.lo;
            s->hi = w.hi;
            s->p += 16;
            s->staged = 128;
        }
        if (s->staged > 0) {
            s->acc |= (s->lo & 0xffffffffull) << s->n;
            s->n += 32;
            s->lo = (s->lo >> 32) | (s->hi << 32);
            s->hi >>= 32;
            s->staged -= 32;
        } else if (s->p < s->end) {
            s->acc |= (uint64_t)(*s->p) << s->n;
            s->p += 1;
            s->n += 8;
        } else {
            s->phantom += 32;
            s->n += 32;
        }
    }
}

// Bits consumed so far.
SHUFF_HD uint64_t consumed_bits(const BitSource* s) {
    return (uint64_t)(s->p - s->start) * 8 + s->phantom - s->n - s->staged;
}

#else  // 4- and 8-byte accesses (the first version; kept while the two are measured side by side)
SHUFF_HD uint64_t load_u64_aligned(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    return *(const uint64_t*)p;
#else
    uint64_t v;
    memcpy(&v, p, 8);
    return v;  // little-endian hosts only (x86-64, aarch64)
#endif
}

SHUFF_HD uint32_t load_u32_aligned(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    return *(const uint32_t*)p;
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}

SHUFF_HD void store_u32_aligned(uint8_t* p, uint32_t v) {
#if defined(__CUDA_ARCH__)
    *(uint32_t*)p = v;
#else
    memcpy(p, &v, 4);
#endif
}

// Reads units of k bytes in order from [p, end): 8-byte aligned loads where the position allows
// (lanes of power-of-two counts start 8-aligned in aligned tensors), bytes otherwise.
struct UnitSource {
    const uint8_t* p;
    const uint8_t* end;
    uint64_t w;
    uint32_t left;  // bytes still in w
};

SHUFF_HD UnitSource unit_source(const uint8_t* p, const uint8_t* end) {
    UnitSource s;
    s.p = p;
    s.end = end;
    s.w = 0;
    s.left = 0;
    return s;
}

SHUFF_HD uint32_t next_unit(UnitSource* s, uint32_t k) {
    if (s->left == 0) {
        if ((((uintptr_t)s->p) & 7) == 0 && s->p + 8 <= s->end) {
            s->w = load_u64_aligned(s->p);
            s->p += 8;
            s->left = 8;
        } else {
            uint64_t w = 0;
            for (uint32_t b = 0; b < k; b++) w |= (uint64_t)s->p[b] << (8 * b);
            s->w = w;
            s->p += k;
            s->left = k;
        }
    }
    uint32_t u = (uint32_t)s->w & unit_mask(k);
    s->w = k == 4 ? (s->w >> 32) : (s->w >> (8 * k));
    s->left -= k;
    return u;
}

// Writes an LSB-first bitstream (or raw bytes, as 8-bit codes) from p on: whole bytes until p is
// 4-aligned, then aligned 32-bit stores. Only bytes that hold bits are written, so neighbouring
// lanes, which own the bytes around, are never touched.
struct BitSink {
    uint8_t* p;
    uint64_t acc;
    uint32_t n;  // pending bits in acc, < 32 between calls
};

SHUFF_HD BitSink bit_sink(uint8_t* p) {
    BitSink s;
    s.p = p;
    s.acc = 0;
    s.n = 0;
    return s;
}

SHUFF_HD void put_bits(BitSink* s, uint32_t bits, uint32_t len) {
    s->acc |= (uint64_t)bits << s->n;
    s->n += len;
    if (s->n >= 32) {
        while ((((uintptr_t)s->p) & 3) != 0 && s->n >= 8) {
            *s->p++ = (uint8_t)s->acc;
            s->acc >>= 8;
            s->n -= 8;
        }
        if ((((uintptr_t)s->p) & 3) == 0 && s->n >= 32) {
            store_u32_aligned(s->p, (uint32_t)s->acc);
            s->p += 4;
            s->acc >>= 32;
            s->n -= 32;
        }
    }
}

// Writes the pending bits, the last byte padded with zeros.
SHUFF_HD void finish_bits(BitSink* s) {
    while (s->n > 0) {
        *s->p++ = (uint8_t)s->acc;
        s->acc >>= 8;
        s->n = s->n >= 8 ? s->n - 8 : 0;
    }
}

// Reads an LSB-first lane [p, end); past the end it reads zeros and counts them, so that the
// final check can tell a lane that needed more bits than it has.
struct BitSource {
    const uint8_t* start;
    const uint8_t* p;
    const uint8_t* end;
    uint64_t acc;
    uint32_t n;        // valid bits in acc
    uint32_t phantom;  // zero bits read past the end
};

SHUFF_HD BitSource bit_source(const uint8_t* p, const uint8_t* end) {
    BitSource s;
    s.start = p;
    s.p = p;
    s.end = end;
    s.acc = 0;
    s.n = 0;
    s.phantom = 0;
    return s;
}

// Tops up to more than 32 valid bits.
SHUFF_HD void refill(BitSource* s) {
    while (s->n <= 32) {
        if ((((uintptr_t)s->p) & 3) == 0 && s->p + 4 <= s->end) {
            s->acc |= (uint64_t)load_u32_aligned(s->p) << s->n;
            s->p += 4;
            s->n += 32;
        } else if (s->p < s->end) {
            s->acc |= (uint64_t)(*s->p) << s->n;
            s->p += 1;
            s->n += 8;
        } else {
            s->phantom += 32;
            s->n += 32;
        }
    }
}

// Bits consumed so far.
SHUFF_HD uint64_t consumed_bits(const BitSource* s) {
    return (uint64_t)(s->p - s->start) * 8 + s->phantom - s->n;
}

#endif

// Decodes one symbol. Codes of fixed codebooks are complete, so every pattern decodes; the check
// stays for safety (returns 256 on bits that start no code).
SHUFF_HD uint32_t decode_symbol(BitSource* s, const StreamTables* t) {
    if (s->n < 16) refill(s);
    uint32_t e = t->dec[s->acc & ((1u << SHUFF_DECODE_BITS) - 1)];
    uint32_t len = e >> 8;
    uint32_t sym = e & 0xff;
    if (len == 0) {
        // Canonical decoding, one bit at a time: codes longer than the table window are rare.
        uint32_t code = 0;
        sym = 256;
        for (uint32_t l = 1; l <= t->max_len && l <= 16; l++) {
            code = (code << 1) | (uint32_t)((s->acc >> (l - 1)) & 1);
            uint32_t i = code - t->first[l];
            if (t->count[l] > 0 && i < t->count[l]) {
                uint32_t at = t->offset[l] + i;
                sym = at < 256 ? t->sorted[at] : 256;
                len = l;
                break;
            }
        }
        if (sym == 256) return 256;
    }
    s->acc >>= len;
    s->n -= len;
    return sym;
}

SHUFF_HD void report(uint32_t* error, uint32_t code) {
#if defined(__CUDA_ARCH__)
    atomicCAS(error, 0u, code);
#else
    if (*error == 0) *error = code;
#endif
}

SHUFF_HD uint32_t read_u16(const uint8_t* p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
SHUFF_HD uint32_t read_u32(const uint8_t* p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// ---- encoder ------------------------------------------------------------------------------------

// Pass 1, thread (c, j): lane_bits[(c*k + s)*lanes + j] = coded bits of lane j of stream s;
// lane_const[...] = first symbol | 1 << 8 if every symbol of the lane equals it | 1 << 9 if empty.
// `enc` holds the k encode tables back to back (256 entries each), copied to shared memory on the device.
template <uint32_t k>
SHUFF_HD void encode_count_thread(uint64_t t, const uint8_t* in, uint64_t total, uint32_t rotate,
                                  uint32_t lanes, const uint32_t* enc, uint32_t* lane_bits, uint32_t* lane_const) {
    uint64_t c = t / lanes;
    uint32_t j = (uint32_t)(t % lanes);
    ChunkGeom g = chunk_geom(total, k, c);
    uint32_t start, len;
    lane_span(g.n, lanes, j, &start, &len);
    UnitSource src = unit_source(in + g.start + (uint64_t)start * k, in + g.start + g.bytes);
    uint32_t bits[SHUFF_MAX_STREAMS] = {0, 0, 0, 0};
    uint32_t first = 0, same = 0xffffffffu;  // per stream: first symbol, and a mask of streams still constant
    for (uint32_t i = 0; i < len; i++) {
        uint32_t syms = to_symbols(next_unit(&src, k), k, rotate);
        if (i == 0) first = syms;
        uint32_t diff = syms ^ first;
        for (uint32_t s = 0; s < k; s++) {
            uint32_t sym = (syms >> (8 * s)) & 0xff;
            bits[s] += enc[256 * s + sym] >> 16;
            if ((diff >> (8 * s)) & 0xff) same &= ~(1u << s);
        }
    }
    for (uint32_t s = 0; s < k; s++) {
        uint64_t at = (c * k + s) * lanes + j;
        lane_bits[at] = bits[s];
        uint32_t flags = ((same >> s) & 1) << 8;
        if (len == 0) flags |= 1u << 9;
        lane_const[at] = ((first >> (8 * s)) & 0xff) | flags;
    }
}

// Pass 2, thread c: decides each stream's mode exactly as the CPU encoder does (constant if every
// symbol is equal; raw if the code is flat, or lane sizes alone would fill the stream, or coding
// is not smaller; else coded) and lays the chunk out. chunk_modes[c] = mode byte;
// stream_off[c*k+s] = offset of the stream inside the chunk; stream_const[c*k+s] = its constant
// symbol; lane_off[(c*k+s)*lanes+j] = offset of lane j's bytes inside the chunk.
SHUFF_HD void encode_plan_thread(uint64_t c, uint64_t total, uint32_t k, uint32_t lanes, const StreamTables* tables,
                                 const uint32_t* lane_bits, const uint32_t* lane_const, uint32_t* chunk_size,
                                 uint32_t* chunk_modes, uint32_t* stream_off, uint32_t* stream_const, uint32_t* lane_off) {
    ChunkGeom g = chunk_geom(total, k, c);
    uint32_t pos = 1, modes = 0;
    for (uint32_t s = 0; s < k; s++) {
        const uint32_t* bits = lane_bits + (c * k + s) * lanes;
        const uint32_t* cons = lane_const + (c * k + s) * lanes;
        // Constant: every non-empty lane constant, all on the same symbol.
        int constant = 1;
        int have = 0;
        uint32_t sym = 0;
        for (uint32_t j = 0; j < lanes; j++) {
            uint32_t e = cons[j];
            if (e & (1u << 9)) continue;
            if (!(e & (1u << 8))) { constant = 0; break; }
            if (have && (e & 0xff) != sym) { constant = 0; break; }
            sym = e & 0xff;
            have = 1;
        }
        stream_off[c * k + s] = pos;
        stream_const[c * k + s] = sym;
        uint32_t mode;
        if (constant) {
            mode = SHUFF_MODE_CONSTANT;
            pos += 1;
        } else if (tables[s].flat || 2 * lanes >= g.n) {
            mode = SHUFF_MODE_RAW;
            pos += g.n;
        } else {
            uint32_t coded = 2 * lanes;
            for (uint32_t j = 0; j < lanes; j++) coded += (bits[j] + 7) / 8;
            if (coded < g.n) {
                mode = SHUFF_MODE_CODED;
                uint32_t at = pos + 2 * lanes;
                for (uint32_t j = 0; j < lanes; j++) {
                    lane_off[(c * k + s) * lanes + j] = at;
                    at += (bits[j] + 7) / 8;
                }
                pos += coded;
            } else {
                mode = SHUFF_MODE_RAW;
                pos += g.n;
            }
        }
        modes |= mode << (2 * s);
    }
    chunk_modes[c] = modes;
    chunk_size[c] = pos;
}

// Pass 3, thread (c, j): writes lane j of every stream of chunk c into `out` at chunk_start[c].
// `table_at` is where the chunk table starts (only written when n_chunks > 1).
template <uint32_t k>
SHUFF_HD void encode_write_thread(uint64_t t, const uint8_t* in, uint64_t total, uint32_t rotate, uint32_t lanes,
                                  const uint32_t* enc, const uint32_t* lane_bits, const uint32_t* chunk_size,
                                  const uint32_t* chunk_modes, const uint32_t* stream_off, const uint32_t* stream_const,
                                  const uint32_t* lane_off, const uint64_t* chunk_start, uint64_t table_at, uint64_t n_chunks,
                                  uint8_t* out) {
    uint64_t c = t / lanes;
    uint32_t j = (uint32_t)(t % lanes);
    ChunkGeom g = chunk_geom(total, k, c);
    uint8_t* chunk = out + chunk_start[c];
    uint32_t modes = chunk_modes[c];
    uint32_t start, len;
    lane_span(g.n, lanes, j, &start, &len);
    BitSink sinks[SHUFF_MAX_STREAMS];
    for (uint32_t s = 0; s < k; s++) {
        uint32_t mode = (modes >> (2 * s)) & 3;
        uint32_t off = stream_off[c * k + s];
        if (mode == SHUFF_MODE_CODED) {
            uint32_t size = (lane_bits[(c * k + s) * lanes + j] + 7) / 8;
            chunk[off + 2 * j] = (uint8_t)size;
            chunk[off + 2 * j + 1] = (uint8_t)(size >> 8);
            sinks[s] = bit_sink(chunk + lane_off[(c * k + s) * lanes + j]);
        } else if (mode == SHUFF_MODE_RAW) {
            sinks[s] = bit_sink(chunk + off + start);
        } else {
            if (j == 0) chunk[off] = (uint8_t)stream_const[c * k + s];
            sinks[s] = bit_sink(chunk);  // unused
        }
    }
    if (j == 0) {
        chunk[0] = (uint8_t)modes;
        if (n_chunks > 1) {
            uint32_t size = chunk_size[c];
            for (int b = 0; b < 4; b++) out[table_at + 4 * c + b] = (uint8_t)(size >> (8 * b));
        }
    }
    UnitSource src = unit_source(in + g.start + (uint64_t)start * k, in + g.start + g.bytes);
    for (uint32_t i = 0; i < len; i++) {
        uint32_t syms = to_symbols(next_unit(&src, k), k, rotate);
        for (uint32_t s = 0; s < k; s++) {
            uint32_t mode = (modes >> (2 * s)) & 3;
            uint32_t sym = (syms >> (8 * s)) & 0xff;
            if (mode == SHUFF_MODE_CODED) {
                uint32_t e = enc[256 * s + sym];
                put_bits(&sinks[s], e & 0xffff, e >> 16);
            } else if (mode == SHUFF_MODE_RAW) {
                put_bits(&sinks[s], sym, 8);
            }
        }
    }
    for (uint32_t s = 0; s < k; s++) {
        if (((modes >> (2 * s)) & 3) != SHUFF_MODE_CONSTANT) finish_bits(&sinks[s]);
    }
}

// The header (its `header_len` ≤ 32 bytes, little-endian in four words) at the start of `out`.
SHUFF_HD void write_header(uint8_t* out, uint32_t header_len, uint64_t h0, uint64_t h1, uint64_t h2, uint64_t h3) {
    for (uint32_t i = 0; i < header_len && i < 32; i++) {
        uint64_t w = i < 8 ? h0 : i < 16 ? h1 : i < 24 ? h2 : h3;
        out[i] = (uint8_t)(w >> (8 * (i % 8)));
    }
}

// ---- decoder ------------------------------------------------------------------------------------

// Chunk sizes of a frame: from the chunk table (u32s at header_len, any alignment) when there is
// more than one chunk, else the rest of the frame. Reports a table that runs past the frame.
SHUFF_HD int decode_chunk_size(const uint8_t* frame, uint64_t frame_len, uint64_t header_len, uint64_t n_chunks, uint64_t c,
                               uint32_t* size) {
    if (n_chunks == 1) {
        if (frame_len < header_len || frame_len - header_len > 0xffffffffull) return 0;
        *size = (uint32_t)(frame_len - header_len);
        return 1;
    }
    if (header_len + 4 * n_chunks > frame_len) return 0;
    *size = read_u32(frame + header_len + 4 * c);
    return 1;
}

// Thread c: validates chunk c (its bytes [chunk_start[c], + chunk_size[c]) inside the frame, mode
// bits, every stream and lane inside the chunk, nothing after the last stream) and lays it out as
// encode_plan does; lane_len[(c*k+s)*lanes+j] = lane j's size. status[c] = 1 when it is sound.
SHUFF_HD void decode_plan_thread(uint64_t c, const uint8_t* frame, uint64_t frame_len, uint64_t total, uint32_t k, uint32_t lanes,
                                 const uint64_t* chunk_start, const uint32_t* chunk_size, uint64_t n_chunks,
                                 uint32_t* chunk_modes, uint32_t* stream_off, uint32_t* stream_const, uint32_t* lane_off,
                                 uint32_t* lane_len, uint32_t* status, uint32_t* error) {
    status[c] = 0;
    ChunkGeom g = chunk_geom(total, k, c);
    uint64_t begin = chunk_start[c];
    uint64_t size = chunk_size[c];
    // Chunk starts are a prefix sum of the sizes, so the chunks tile the frame exactly when the
    // last one ends at its end and every start is inside it.
    if (begin > frame_len || size > frame_len - begin || size == 0 || (c + 1 == n_chunks && begin + size != frame_len)) {
        report(error, SHUFF_ERR_CHUNK_SIZE);
        return;
    }
    const uint8_t* chunk = frame + begin;
    uint32_t modes = chunk[0];
    if (k < 4 && (modes >> (2 * k)) != 0) {
        report(error, SHUFF_ERR_MODE);
        return;
    }
    uint64_t pos = 1;
    for (uint32_t s = 0; s < k; s++) {
        uint32_t mode = (modes >> (2 * s)) & 3;
        stream_off[c * k + s] = (uint32_t)pos;
        if (mode == SHUFF_MODE_CODED) {
            if (pos + 2 * lanes > size) { report(error, SHUFF_ERR_STREAM_SIZE); return; }
            uint64_t at = pos + 2 * lanes;
            for (uint32_t j = 0; j < lanes; j++) {
                uint32_t len = read_u16(chunk + pos + 2 * j);
                lane_off[(c * k + s) * lanes + j] = (uint32_t)at;
                lane_len[(c * k + s) * lanes + j] = len;
                at += len;
            }
            if (at > size) { report(error, SHUFF_ERR_STREAM_SIZE); return; }
            pos = at;
        } else if (mode == SHUFF_MODE_RAW) {
            if (pos + g.n > size) { report(error, SHUFF_ERR_STREAM_SIZE); return; }
            pos += g.n;
        } else if (mode == SHUFF_MODE_CONSTANT) {
            if (pos + 1 > size) { report(error, SHUFF_ERR_STREAM_SIZE); return; }
            stream_const[c * k + s] = chunk[pos];
            pos += 1;
        } else {
            report(error, SHUFF_ERR_MODE);
            return;
        }
    }
    if (pos != size) {
        report(error, SHUFF_ERR_TRAILING);
        return;
    }
    chunk_modes[c] = modes;
    status[c] = 1;
}

// Thread (c, j): decodes lane j of every stream of chunk c and writes the lane's elements.
template <uint32_t k>
SHUFF_HD void decode_thread(uint64_t t, const uint8_t* frame, uint64_t total, uint32_t rotate, uint32_t lanes,
                            const StreamTables* tables, const uint64_t* chunk_start, const uint32_t* chunk_modes,
                            const uint32_t* stream_off, const uint32_t* stream_const, const uint32_t* lane_off,
                            const uint32_t* lane_len, const uint32_t* status, uint8_t* out, uint32_t* error) {
    uint64_t c = t / lanes;
    uint32_t j = (uint32_t)(t % lanes);
    if (!status[c]) return;
    ChunkGeom g = chunk_geom(total, k, c);
    const uint8_t* chunk = frame + chunk_start[c];
    uint32_t modes = chunk_modes[c];
    uint32_t start, len;
    lane_span(g.n, lanes, j, &start, &len);
    BitSource bits[SHUFF_MAX_STREAMS];
    UnitSource raw[SHUFF_MAX_STREAMS];
    uint32_t constant = 0;
    for (uint32_t s = 0; s < k; s++) {
        uint32_t mode = (modes >> (2 * s)) & 3;
        uint32_t off = stream_off[c * k + s];
        bits[s] = bit_source(chunk, chunk);
        raw[s] = unit_source(chunk, chunk);
        if (mode == SHUFF_MODE_CODED) {
            const uint8_t* p = chunk + lane_off[(c * k + s) * lanes + j];
            bits[s] = bit_source(p, p + lane_len[(c * k + s) * lanes + j]);
        } else if (mode == SHUFF_MODE_RAW) {
            raw[s] = unit_source(chunk + off + start, chunk + off + start + len);
        } else {
            constant |= (stream_const[c * k + s] & 0xff) << (8 * s);
        }
    }
    BitSink sink = bit_sink(out + g.start + (uint64_t)start * k);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < len; i++) {
        uint32_t syms = constant;
        for (uint32_t s = 0; s < k; s++) {
            uint32_t mode = (modes >> (2 * s)) & 3;
            if (mode == SHUFF_MODE_CODED) {
                uint32_t sym = decode_symbol(&bits[s], &tables[s]);
                bad |= sym >> 8;
                syms |= (sym & 0xff) << (8 * s);
            } else if (mode == SHUFF_MODE_RAW) {
                syms |= next_unit(&raw[s], 1) << (8 * s);
            }
        }
        put_bits(&sink, from_symbols(syms, k, rotate), 8 * k);
    }
    finish_bits(&sink);
    if (bad) report(error, SHUFF_ERR_BAD_CODE);
    for (uint32_t s = 0; s < k; s++) {
        if (((modes >> (2 * s)) & 3) != SHUFF_MODE_CODED) continue;
        uint64_t used = consumed_bits(&bits[s]);
        uint64_t have = (uint64_t)(bits[s].end - bits[s].start) * 8;
        if (used > have || used + 8 <= have) report(error, SHUFF_ERR_LANE_END);
    }
}
