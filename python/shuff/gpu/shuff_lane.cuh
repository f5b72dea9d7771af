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
#define SHUFF_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)
#include <stdint.h>
#define SHUFF_HD __host__ __device__ __forceinline__
#define SHUFF_UNROLL _Pragma("unroll")
#else
#include <stdint.h>
#include <string.h>
#define SHUFF_HD inline
#define SHUFF_UNROLL _Pragma("GCC unroll 16")
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
// Each thread streams through its own lane, so every warp-wide access touches 32 different cache
// lines and costs the L1 one pass per line: bytes per access, not accesses, set the speed. All
// bulk traffic is therefore 16-byte aligned loads and stores (measured on an H200: 4-byte stores
// made the encoder 3.8 times slower), and the loops are written without data-dependent branches
// (threads of a warp refill and flush at different times; a branch there runs for the whole warp).

struct Wide {
    uint64_t lo, hi;
};

// The aligned 16-byte block at `p`, of which bytes outside [begin, end) read as zeros. On the
// device the block is loaded whole when it starts before `end` (an aligned block holding a byte of
// a buffer lies inside its allocation; the bytes outside are never used — see BitSource), and is
// zero when it starts at or past `end`.
SHUFF_HD Wide load16(const uint8_t* p, const uint8_t* begin, const uint8_t* end) {
    Wide w;
    w.lo = w.hi = 0;
#if defined(__CUDA_ARCH__)
    (void)begin;
    if (p < end) {
        uint4 v = *(const uint4*)p;
        w.lo = (uint64_t)v.x | ((uint64_t)v.y << 32);
        w.hi = (uint64_t)v.z | ((uint64_t)v.w << 32);
    }
#else
    for (int i = 0; i < 16; i++) {
        if (p + i >= begin && p + i < end) {
            uint64_t b = p[i];
            if (i < 8) w.lo |= b << (8 * i);
            else w.hi |= b << (8 * (i - 8));
        }
    }
#endif
    return w;
}

SHUFF_HD void store16(uint8_t* p, uint64_t lo, uint64_t hi) {
#if defined(__CUDA_ARCH__)
    *(uint4*)p = make_uint4((uint32_t)lo, (uint32_t)(lo >> 32), (uint32_t)hi, (uint32_t)(hi >> 32));
#else
    memcpy(p, &lo, 8);  // little-endian hosts only (x86-64, aarch64)
    memcpy(p + 8, &hi, 8);
#endif
}

// (lo, hi) >> bits, 0 <= bits < 128.
SHUFF_HD Wide shr128(Wide w, uint32_t bits) {
    Wide r;
    if (bits == 0) return w;
    if (bits < 64) {
        r.lo = (w.lo >> bits) | (w.hi << (64 - bits));
        r.hi = w.hi >> bits;
    } else {
        r.lo = w.hi >> (bits - 64);
        r.hi = 0;
    }
    return r;
}

SHUFF_HD uint32_t byte_of(Wide w, uint32_t i) { return (uint32_t)((i < 8 ? w.lo >> (8 * i) : w.hi >> (8 * (i - 8))) & 0xff); }

// A unit of k bytes read one byte at a time (unaligned lane ends).
template <uint32_t k>
SHUFF_HD uint32_t unit_at(const uint8_t* p) {
    uint32_t u = 0;
    for (uint32_t b = 0; b < k; b++) u |= (uint32_t)p[b] << (8 * b);
    return u;
}

// Unit u of a 16-byte block (u is a compile-time constant once the loops are unrolled).
template <uint32_t k>
SHUFF_HD uint32_t unit_of(Wide w, uint32_t u) {
    uint32_t bit = 8 * k * u;
    uint64_t v = bit < 64 ? w.lo >> bit : w.hi >> (bit - 64);
    return (uint32_t)v & unit_mask(k);
}

// Calls f(unit) for the `units` units of k bytes at p, in order, and f.flush() after every second
// unit (and after each unit of the unaligned head and tail): 16-byte loads for the aligned middle.
template <uint32_t k, class F>
SHUFF_HD void for_each_unit(const uint8_t* p, uint32_t units, F& f) {
    uint32_t i = 0;
    uint32_t lead = units;  // a lane not k-aligned (a tensor at an odd address) is read bytewise
    if ((((uintptr_t)p) & (k - 1)) == 0) {
        lead = (uint32_t)((16 - (((uintptr_t)p) & 15)) & 15) / k;
        if (lead > units) lead = units;
    }
    for (; i < lead; i++) {
        f(unit_at<k>(p + i * k));
        f.flush();
    }
    const uint32_t per = 16 / k;
    uint32_t blocks = (units - lead) / per;
    const uint8_t* q = p + lead * k;
    // The next block is loaded while this one is coded: a thread has nothing else to hide the
    // load's latency behind.
    const uint8_t* q_end = q + 16 * blocks;
    Wide next = load16(q, q, q_end);
    for (uint32_t b = 0; b < blocks; b++) {
        Wide w = next;
        if (b + 1 < blocks) next = load16(q + 16 * (b + 1), q, q_end);
SHUFF_UNROLL
        for (uint32_t u = 0; u < per; u += 2) {
            f(unit_of<k>(w, u));
            f(unit_of<k>(w, u + 1));
            f.flush();
        }
    }
    for (i = lead + blocks * per; i < units; i++) {
        f(unit_at<k>(p + i * k));
        f.flush();
    }
}

// Writes an LSB-first bitstream from `p` on as if it began at the 16-aligned address below, with
// `skip` bytes of placeholder bits first: every 32-bit word then lands aligned, and words are
// gathered four at a time (a 128-bit shift register) into 16-byte stores. The first block (which
// holds the placeholder bytes) and the last one are shared with neighbouring lanes: they are kept
// and written bytewise at the end, so that only bytes holding this lane's bits are written. The
// hot path is branch-free (selects and a predicated store): threads of a warp flush at different
// times, and a branch would run the flush for the whole warp at every step.
struct BitSink {
    uint8_t* base;    // 16-aligned
    uint32_t skip;    // placeholder bytes at base
    uint32_t blocks;  // 16-byte blocks completed
    uint64_t acc;
    uint32_t n;       // bits in acc: < 32 after flush_bits(), < 64 between flushes
    uint32_t qn;      // words queued in (qlo, qhi), in its top qn words
    uint64_t qlo, qhi;
    uint64_t flo, fhi;  // the first block, when it has placeholder bytes
};

SHUFF_HD BitSink bit_sink(uint8_t* p) {
    BitSink s;
    s.base = (uint8_t*)((uintptr_t)p & ~(uintptr_t)15);
    s.skip = (uint32_t)(p - s.base);
    s.blocks = 0;
    s.acc = 0;
    s.n = 8 * (s.skip % 4);
    s.qn = s.skip / 4;
    s.qlo = s.qhi = s.flo = s.fhi = 0;
    return s;
}

SHUFF_HD void put_bits(BitSink* s, uint32_t bits, uint32_t len) {
    s->acc |= (uint64_t)bits << s->n;
    s->n += len;
}

// Writes bytes [from, count) of block `w` at block index `block`.
SHUFF_HD void store_bytes(BitSink* s, uint32_t block, Wide w, uint32_t from, uint32_t count) {
    uint8_t* at = s->base + 16 * (uint64_t)block;
    for (uint32_t i = from; i < count; i++) at[i] = (uint8_t)byte_of(w, i);
}

// Moves a full 32-bit word, if there is one, from acc to the queue, storing a block when four are
// queued.
SHUFF_HD void flush_bits(BitSink* s) {
    uint32_t take = s->n >= 32;
    uint64_t w = (uint32_t)s->acc;
    uint64_t lo = (s->qlo >> 32) | (s->qhi << 32);
    uint64_t hi = (s->qhi >> 32) | (w << 32);
    s->qlo = take ? lo : s->qlo;
    s->qhi = take ? hi : s->qhi;
    s->acc = take ? s->acc >> 32 : s->acc;
    s->n -= 32 * take;
    s->qn += take;
    uint32_t full = s->qn == 4;
    uint32_t first = full && s->blocks == 0 && s->skip != 0;
    if (full && !first) store16(s->base + 16 * (uint64_t)s->blocks, s->qlo, s->qhi);
    s->flo = first ? s->qlo : s->flo;
    s->fhi = first ? s->qhi : s->fhi;
    s->blocks += full;
    s->qn = full ? 0 : s->qn;
}

// Writes what is kept, queued and pending, the last byte padded with zeros.
SHUFF_HD void finish_bits(BitSink* s) {
    while (s->n >= 32) flush_bits(s);
    if (s->blocks > 0 && s->skip != 0) {
        Wide f = {s->flo, s->fhi};
        store_bytes(s, 0, f, s->skip, 16);
    }
    Wide q = {s->qlo, s->qhi};
    q = s->qn ? shr128(q, 128 - 32 * s->qn) : Wide{0, 0};
    uint32_t count = 4 * s->qn + (s->n + 7) / 8;
    // The queued words then the pending bits, as one little-endian block (count <= 16).
    if (s->qn < 2) q.lo |= s->acc << (32 * s->qn);
    if (s->qn == 1) q.hi |= s->acc >> 32;
    if (s->qn == 2) q.hi = s->acc;
    if (s->qn == 3) q.hi |= s->acc << 32;
    store_bytes(s, s->blocks, q, s->blocks == 0 ? s->skip : 0, count);
    s->qn = 0;
    s->n = 0;
}

// Reads an LSB-first lane: 16-byte aligned blocks staged in (lo, hi), fed to a 64-bit bit buffer
// 32 bits at a time, so that the buffer holds at least 32 bits before every symbol. The first block
// may begin before the lane and the last end after it: the bytes before are dropped at the start;
// the bytes after are at most peeked at by a table lookup, which, the code being prefix-free, does
// not change a symbol whose code lies in the lane — and a lane that consumes them is reported by
// the end check (consumed_bits). Blocks at or past the frame's end read as zeros.
struct BitSource {
    const uint8_t* base;  // 16-aligned, at or below the lane start
    const uint8_t* p;     // next block
    const uint8_t* begin; // the frame
    const uint8_t* end;
    uint32_t skip;        // bytes of the first block before the lane
    uint64_t acc;
    uint32_t n;
    uint64_t lo, hi;
    uint32_t staged;      // bits in (lo, hi): a multiple of 32
};

// When acc has fewer than 32 bits, moves 32 staged bits into it, loading the next block first when
// none are staged — without a branch around the bit moves (the block load is the only conditional
// part: one thread in eight refills per symbol needs it).
SHUFF_HD void top_up(BitSource* s) {
    uint32_t need = s->n < 32;
    if (need && s->staged == 0) {
        Wide w = load16(s->p, s->begin, s->end);
        s->p += 16;
        s->lo = w.lo;
        s->hi = w.hi;
        s->staged = 128;
    }
    s->acc |= need ? (s->lo & 0xffffffffull) << s->n : 0;
    uint64_t lo = (s->lo >> 32) | (s->hi << 32);
    s->lo = need ? lo : s->lo;
    s->hi = need ? s->hi >> 32 : s->hi;
    s->n += 32 * need;
    s->staged -= 32 * need;
}

SHUFF_HD BitSource bit_source(const uint8_t* start, const uint8_t* frame_begin, const uint8_t* frame_end) {
    BitSource s;
    s.begin = frame_begin;
    s.end = frame_end;
    s.base = (const uint8_t*)((uintptr_t)start & ~(uintptr_t)15);
    s.skip = (uint32_t)(start - s.base);
    Wide w = shr128(load16(s.base, frame_begin, frame_end), 8 * s.skip);
    s.p = s.base + 16;
    uint32_t have = 128 - 8 * s.skip;
    uint32_t r = have % 32;  // bits to move now so that the staged count is a multiple of 32
    s.acc = r ? (w.lo & ((1ull << r) - 1)) : 0;
    s.n = r;
    w = shr128(w, r);
    s.lo = w.lo;
    s.hi = w.hi;
    s.staged = have - r;
    while (s.n < 32) top_up(&s);
    return s;
}

// Bits consumed so far.
SHUFF_HD uint64_t consumed_bits(const BitSource* s) {
    return (uint64_t)(s->p - s->base) * 8 - 8 * (uint64_t)s->skip - s->staged - s->n;
}

// Canonical decoding of a code longer than the table window, one bit at a time (rare by
// construction). Returns the symbol and sets *len, or 256 on bits that start no code.
SHUFF_HD uint32_t decode_long(uint64_t acc, const StreamTables* t, uint32_t* len) {
    uint32_t code = 0;
    for (uint32_t l = 1; l <= t->max_len && l <= 16; l++) {
        code = (code << 1) | (uint32_t)((acc >> (l - 1)) & 1);
        uint32_t i = code - t->first[l];
        if (t->count[l] > 0 && i < t->count[l]) {
            uint32_t at = t->offset[l] + i;
            *len = l;
            return at < 256 ? t->sorted[at] : 256;
        }
    }
    *len = 1;
    return 256;
}

// Decode two elements a round (one refill check per stream per round): measured on the H200,
// 1 GiB bf16 exponent decode 4557 -> 3934 µs (bench/results/gpu-h200-v6-pairs-profile.log).
#ifndef SHUFF_DECODE_PAIRS
#define SHUFF_DECODE_PAIRS 1
#endif

// Decodes one code (>= 16 valid bits on entry; no refill). `raw`: the stream is stored as bytes,
// decoded as 8-bit codes without a table. Returns 256 on bits that start no code.
SHUFF_HD uint32_t decode_code(BitSource* s, const StreamTables* t, uint32_t raw) {
    uint32_t e = raw ? (((uint32_t)s->acc & 0xff) | (8u << 8)) : t->dec[s->acc & ((1u << SHUFF_DECODE_BITS) - 1)];
    uint32_t len = e >> 8;
    uint32_t sym = e & 0xff;
    if (len == 0) sym = decode_long(s->acc, t, &len);
    s->acc >>= len;
    s->n -= len;
    return sym;
}

// Decodes one symbol (>= 32 valid bits on entry and on return).
SHUFF_HD uint32_t decode_symbol(BitSource* s, const StreamTables* t, uint32_t raw) {
    uint32_t sym = decode_code(s, t, raw);
    top_up(s);
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
struct LaneCounter {
    const uint32_t* enc;
    uint32_t rotate, first, diff;
    uint32_t bits[k];
    SHUFF_HD void operator()(uint32_t unit) {
        uint32_t syms = to_symbols(unit, k, rotate);
        diff |= syms ^ first;
SHUFF_UNROLL
        for (uint32_t s = 0; s < k; s++) bits[s] += enc[256 * s + ((syms >> (8 * s)) & 0xff)] >> 16;
    }
    SHUFF_HD void flush() {}
};

template <uint32_t k>
SHUFF_HD void encode_count_thread(uint64_t t, const uint8_t* in, uint64_t total, uint32_t rotate,
                                  uint32_t lanes, const uint32_t* enc, uint32_t* lane_bits, uint32_t* lane_const) {
    uint64_t c = t / lanes;
    uint32_t j = (uint32_t)(t % lanes);
    ChunkGeom g = chunk_geom(total, k, c);
    uint32_t start, len;
    lane_span(g.n, lanes, j, &start, &len);
    const uint8_t* p = in + g.start + (uint64_t)start * k;
    LaneCounter<k> f;
    f.enc = enc;
    f.rotate = rotate;
    f.first = len ? to_symbols(unit_at<k>(p), k, rotate) : 0;
    f.diff = 0;
    for (uint32_t s = 0; s < k; s++) f.bits[s] = 0;
    for_each_unit<k>(p, len, f);
    for (uint32_t s = 0; s < k; s++) {
        uint64_t at = (c * k + s) * lanes + j;
        lane_bits[at] = f.bits[s];
        uint32_t flags = (((f.diff >> (8 * s)) & 0xff) == 0 ? 1u : 0u) << 8;
        if (len == 0) flags |= 1u << 9;
        lane_const[at] = ((f.first >> (8 * s)) & 0xff) | flags;
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
struct LaneWriter {
    const uint32_t* enc;
    uint32_t rotate;
    uint32_t raw[k], skip[k];  // per stream: stored raw (8-bit codes), constant (nothing written)
    BitSink sinks[k];
    SHUFF_HD void operator()(uint32_t unit) {
        uint32_t syms = to_symbols(unit, k, rotate);
SHUFF_UNROLL
        for (uint32_t s = 0; s < k; s++) {
            uint32_t sym = (syms >> (8 * s)) & 0xff;
            uint32_t e = enc[256 * s + sym];
            e = raw[s] ? sym | (8u << 16) : e;
            e = skip[s] ? 0 : e;
            put_bits(&sinks[s], e & 0xffff, e >> 16);
        }
    }
    SHUFF_HD void flush() {
SHUFF_UNROLL
        for (uint32_t s = 0; s < k; s++) flush_bits(&sinks[s]);
    }
};

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
    LaneWriter<k> f;
    f.enc = enc;
    f.rotate = rotate;
    for (uint32_t s = 0; s < k; s++) {
        uint32_t mode = (modes >> (2 * s)) & 3;
        uint32_t off = stream_off[c * k + s];
        f.raw[s] = mode == SHUFF_MODE_RAW;
        f.skip[s] = mode == SHUFF_MODE_CONSTANT;
        if (mode == SHUFF_MODE_CODED) {
            uint32_t size = (lane_bits[(c * k + s) * lanes + j] + 7) / 8;
            chunk[off + 2 * j] = (uint8_t)size;
            chunk[off + 2 * j + 1] = (uint8_t)(size >> 8);
            f.sinks[s] = bit_sink(chunk + lane_off[(c * k + s) * lanes + j]);
        } else if (mode == SHUFF_MODE_RAW) {
            f.sinks[s] = bit_sink(chunk + off + start);
        } else {
            if (j == 0) chunk[off] = (uint8_t)stream_const[c * k + s];
            f.sinks[s] = bit_sink(chunk);  // never written: constant streams put no bits
        }
    }
    if (j == 0) {
        chunk[0] = (uint8_t)modes;
        if (n_chunks > 1) {
            uint32_t size = chunk_size[c];
            for (int b = 0; b < 4; b++) out[table_at + 4 * c + b] = (uint8_t)(size >> (8 * b));
        }
    }
    for_each_unit<k>(in + g.start + (uint64_t)start * k, len, f);
    for (uint32_t s = 0; s < k; s++) finish_bits(&f.sinks[s]);
}

// The header (its `header_len` ≤ 32 bytes, little-endian in four words) at the start of `out`.
SHUFF_HD void write_header(uint8_t* out, uint32_t header_len, uint64_t h0, uint64_t h1, uint64_t h2, uint64_t h3) {
    for (uint32_t i = 0; i < header_len && i < 32; i++) {
        uint64_t w = i < 8 ? h0 : i < 16 ? h1 : i < 24 ? h2 : h3;
        out[i] = (uint8_t)(w >> (8 * (i % 8)));
    }
}

// ---- sampling (codebook family choice) ---------------------------------------------------------

SHUFF_HD void count_one(uint32_t* c) {
#if defined(__CUDA_ARCH__)
    atomicAdd(c, 1u);
#else
    ++*c;
#endif
}

// Thread t counts the symbols of element t * stride: every byte of it into stream 0 for one-stream
// layouts, byte s of its symbols into stream s otherwise — the sample shuff::Family::choose counts
// (every stride-th element), so that the GPU picks the members the CPU would.
SHUFF_HD void sample_histogram_thread(uint64_t t, const uint8_t* in, uint64_t elements, uint32_t es, uint32_t k, uint32_t rotate,
                                      uint32_t stride, uint32_t* counts) {
    uint64_t e = t * stride;
    if (e >= elements) return;
    const uint8_t* p = in + e * es;
    uint32_t unit = 0;
    for (uint32_t b = 0; b < es; b++) unit |= (uint32_t)p[b] << (8 * b);
    if (k == 1) {
        for (uint32_t b = 0; b < es; b++) count_one(&counts[(unit >> (8 * b)) & 0xff]);
    } else {
        uint32_t syms = to_symbols(unit, k, rotate);
        for (uint32_t s = 0; s < k; s++) count_one(&counts[256 * s + ((syms >> (8 * s)) & 0xff)]);
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
// Raw streams decode as 8-bit codes; constant streams decode (and then ignore) nothing but zeros.
template <uint32_t k>
SHUFF_HD void decode_thread(uint64_t t, const uint8_t* frame, uint64_t frame_len, uint64_t total, uint32_t rotate, uint32_t lanes,
                            const StreamTables* tables, const uint64_t* chunk_start, const uint32_t* chunk_modes,
                            const uint32_t* stream_off, const uint32_t* stream_const, const uint32_t* lane_off,
                            const uint32_t* lane_len, const uint32_t* status, uint8_t* out, uint32_t* error) {
    uint64_t c = t / lanes;
    uint32_t j = (uint32_t)(t % lanes);
    if (!status[c]) return;
    ChunkGeom g = chunk_geom(total, k, c);
    const uint8_t* chunk = frame + chunk_start[c];
    const uint8_t* frame_end = frame + frame_len;
    uint32_t modes = chunk_modes[c];
    uint32_t start, len;
    lane_span(g.n, lanes, j, &start, &len);
    BitSource src[k];
    uint32_t raw[k], have[k];
    uint32_t cmask = 0, cval = 0;
    for (uint32_t s = 0; s < k; s++) {
        uint32_t mode = (modes >> (2 * s)) & 3;
        uint32_t off = stream_off[c * k + s];
        raw[s] = mode != SHUFF_MODE_CODED;
        if (mode == SHUFF_MODE_CODED) {
            src[s] = bit_source(chunk + lane_off[(c * k + s) * lanes + j], frame, frame_end);
            have[s] = 8 * lane_len[(c * k + s) * lanes + j];
        } else if (mode == SHUFF_MODE_RAW) {
            src[s] = bit_source(chunk + off + start, frame, frame_end);
            have[s] = 8 * len;
        } else {
            src[s] = bit_source(chunk, frame, frame_end);
            have[s] = 0;
            cmask |= 0xffu << (8 * s);
            cval |= (stream_const[c * k + s] & 0xff) << (8 * s);
        }
    }
    BitSink sink = bit_sink(out + g.start + (uint64_t)start * k);
    uint32_t bad = 0;
    uint32_t i = 0;
#if SHUFF_DECODE_PAIRS
    // Two elements a round, each stream topped up once a round: 32 bits cover two codes of at most
    // 16 bits, so the refill check runs half as often.
    for (; i + 1 < len; i += 2) {
        uint32_t a = 0, b = 0;
SHUFF_UNROLL
        for (uint32_t s = 0; s < k; s++) {
            uint32_t sa = decode_code(&src[s], &tables[s], raw[s]);
            uint32_t sb = decode_code(&src[s], &tables[s], raw[s]);
            top_up(&src[s]);
            bad |= (sa | sb) >> 8;
            a |= (sa & 0xff) << (8 * s);
            b |= (sb & 0xff) << (8 * s);
        }
        put_bits(&sink, from_symbols((a & ~cmask) | cval, k, rotate), 8 * k);
        if (k == 4) flush_bits(&sink);
        put_bits(&sink, from_symbols((b & ~cmask) | cval, k, rotate), 8 * k);
        flush_bits(&sink);
    }
#endif
    for (; i < len; i++) {
        uint32_t syms = 0;
SHUFF_UNROLL
        for (uint32_t s = 0; s < k; s++) {
            uint32_t sym = decode_symbol(&src[s], &tables[s], raw[s]);
            bad |= sym >> 8;
            syms |= (sym & 0xff) << (8 * s);
        }
        syms = (syms & ~cmask) | cval;
        put_bits(&sink, from_symbols(syms, k, rotate), 8 * k);
        if (k == 4 || (i & 1)) flush_bits(&sink);
    }
    finish_bits(&sink);
    if (bad) report(error, SHUFF_ERR_BAD_CODE);
    for (uint32_t s = 0; s < k; s++) {
        if ((cmask >> (8 * s)) & 0xff) continue;
        uint64_t used = consumed_bits(&src[s]);
        if (used > have[s] || used + 8 <= have[s]) report(error, SHUFF_ERR_LANE_END);
    }
}

// ---- CRC-32 of tensor bytes where they lie ----------------------------------------------------
// A frame's checksum is zlib's CRC-32 of its tensor bytes (docs/FORMAT.md). On the device the
// bytes are cut into spans of `span` bytes, one thread each (crc_span_thread, slice-by-4 tables),
// and the spans' CRCs are put together as crates/shuff/src/crc.rs puts chunks' together:
// crc(A‖B) = crc(A)·x^(8|B|) mod P ⊕ crc(B) (zlib's crc32_combine), first `group` spans a thread
// (crc_group_thread), then the groups by one thread (crc_frame_thread).
#define SHUFF_CRC_POLY 0xedb88320u
#define SHUFF_CRC_TABLE_WORDS 1024u

// a·b mod P, polynomials bit-reflected (bit 31 is x^0), as zlib's multmodp.
SHUFF_HD uint32_t crc_multiply(uint32_t a, uint32_t b) {
    uint32_t p = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m) p ^= b;
        b = (b & 1) ? (b >> 1) ^ SHUFF_CRC_POLY : b >> 1;
    }
    return p;
}

// x^(8·bytes) mod P: what appending `bytes` zero bytes multiplies a CRC by.
SHUFF_HD uint32_t crc_zeros_operator(uint64_t bytes) {
    uint32_t p = 1u << 31, square = 1u << 23;  // x^0, x^8
    for (; bytes; bytes >>= 1) {
        if (bytes & 1) p = crc_multiply(square, p);
        square = crc_multiply(square, square);
    }
    return p;
}

// The CRC of pieces [first, end) of the data, from theirs: each piece `piece` bytes long, but the
// data's last, which ends at byte `total` (crc(A‖B) = crc(A)·x^(8|B|) ⊕ crc(B)).
SHUFF_HD uint32_t crc_of_pieces(const uint32_t* crcs, uint64_t first, uint64_t end, uint64_t piece, uint64_t total) {
    uint32_t whole = crc_zeros_operator(piece), acc = crcs[first];
    for (uint64_t i = first + 1; i < end; i++) {
        uint64_t len = total - i * piece;
        acc = crc_multiply(len >= piece ? whole : crc_zeros_operator(len), acc) ^ crcs[i];
    }
    return acc;
}

// The CRC register after one byte `n` from a zero register (the byte-wise table's entry n).
SHUFF_HD uint32_t crc_byte(uint32_t n) {
    uint32_t c = n;
    for (int b = 0; b < 8; b++) c = (c & 1) ? (c >> 1) ^ SHUFF_CRC_POLY : c >> 1;
    return c;
}

// Entry `index` of the slice-by-4 tables (4 × 256 words): table k, byte n is the CRC register
// after byte n and k zero bytes.
SHUFF_HD uint32_t crc_table_entry(uint32_t index) {
    uint32_t c = crc_byte(index & 255);
    for (uint32_t z = 0; z < index >> 8; z++) c = (c >> 8) ^ crc_byte(c & 255);
    return c;
}

SHUFF_HD uint32_t load_u32_le(const uint8_t* p) {
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    return *(const uint32_t*)p;  // 4-byte aligned here; the device is little-endian
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}

// zlib's crc32(0, p, n), through `table` (crc_table_entry for 0..SHUFF_CRC_TABLE_WORDS).
SHUFF_HD uint32_t crc_bytes(const uint8_t* p, uint64_t n, const uint32_t* table) {
    uint32_t crc = 0xffffffffu;
    for (; n && ((uintptr_t)p & 3); n--) crc = (crc >> 8) ^ table[(crc ^ *p++) & 255];
    for (; n >= 4; n -= 4, p += 4) {
        crc ^= load_u32_le(p);
        crc = table[768 + (crc & 255)] ^ table[512 + ((crc >> 8) & 255)] ^ table[256 + ((crc >> 16) & 255)] ^ table[crc >> 24];
    }
    for (; n; n--) crc = (crc >> 8) ^ table[(crc ^ *p++) & 255];
    return ~crc;
}

// Thread t: the CRC of bytes [t·span, (t+1)·span) of data (the last span may be shorter).
SHUFF_HD void crc_span_thread(uint64_t t, const uint8_t* data, uint64_t total, uint64_t span, const uint32_t* table, uint32_t* span_crc) {
    uint64_t lo = t * span, n = total - lo < span ? total - lo : span;
    span_crc[t] = crc_bytes(data + lo, n, table);
}

// Thread g: the CRC of spans [g·group, (g+1)·group), from theirs.
SHUFF_HD void crc_group_thread(uint64_t g, const uint32_t* span_crc, uint64_t n_spans, uint64_t total, uint64_t span, uint64_t group,
                               uint32_t* group_crc) {
    uint64_t first = g * group, end = first + group < n_spans ? first + group : n_spans;
    group_crc[g] = crc_of_pieces(span_crc, first, end, span, total);
}

// One thread: the CRC of all the data, from the groups'.
SHUFF_HD void crc_frame_thread(const uint32_t* group_crc, uint64_t n_groups, uint64_t total, uint64_t group_bytes, uint32_t* crc) {
    *crc = crc_of_pieces(group_crc, 0, n_groups, group_bytes, total);
}
