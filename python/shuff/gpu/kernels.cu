// CUDA kernels of shuff's device coder: thin wrappers that stage each stream's tables in shared
// memory and call the per-thread code of shuff_lane.cuh (which host_emulation.cpp runs on the CPU
// in the tests). Compiled at run time by NVRTC (through CuPy); launched by shuff/gpu/__init__.py.
#include "shuff_lane.cuh"

// Copies `words` 32-bit words from global to shared memory with the whole block.
__device__ __forceinline__ void stage(uint32_t* dst, const uint32_t* src, uint32_t words) {
    for (uint32_t i = threadIdx.x; i < words; i += blockDim.x) dst[i] = src[i];
}

#define SHUFF_THREAD_INDEX ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x)
// Blocks of 256 threads an SM should hold at once for the decoder: the compiler caps registers to
// fit (4: 64 registers, half the SM's threads; 0: no cap). The decoder is latency-bound (each
// thread is one serial chain of table lookups), so resident threads hide the latency: measured on
// an H200, 4 took 256 MiB from 1587 to 1110 µs (5: 48 registers and spills, 2168 µs). The encoder
// measured best without a cap (76 registers: 1 GiB 2428 µs; capped at 64: 2722 µs).
#ifndef SHUFF_MIN_BLOCKS
#define SHUFF_MIN_BLOCKS 4
#endif
#if SHUFF_MIN_BLOCKS > 0
#define SHUFF_BOUNDS __launch_bounds__(256, SHUFF_MIN_BLOCKS)
#else
#define SHUFF_BOUNDS
#endif
#define SCAN_THREADS 1024

// Exclusive prefix sum of `size[0..n)` from `base` into `start`, by one block of SCAN_THREADS
// threads (each sums a contiguous run; thread 0 scans the run totals). Returns base + the sum.
__device__ uint64_t block_scan(const uint32_t* size, uint64_t n, uint64_t base, uint64_t* start) {
    __shared__ uint64_t part[SCAN_THREADS];
    __shared__ uint64_t total;
    uint64_t per = (n + SCAN_THREADS - 1) / SCAN_THREADS;
    uint64_t lo = threadIdx.x * per, hi = lo + per < n ? lo + per : n;
    uint64_t sum = 0;
    for (uint64_t c = lo; c < hi; c++) sum += size[c];
    part[threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        uint64_t at = base;
        for (int t = 0; t < SCAN_THREADS; t++) {
            uint64_t p = part[t];
            part[t] = at;
            at += p;
        }
        total = at;
    }
    __syncthreads();
    uint64_t at = part[threadIdx.x];
    for (uint64_t c = lo; c < hi; c++) {
        start[c] = at;
        at += size[c];
    }
    return total;
}

// Kernels that loop over elements come in one instance per stream count k (1, 2, 4), each
// compiled for its own register needs: a single kernel switching on k is sized for k = 4 (101
// registers for decode), which halves the threads an SM can hold for the common k = 2.
#define SHUFF_ENCODE_COUNT(K)                                                                                                  \
    extern "C" __global__ void shuff_encode_count_k##K(const uint8_t* in, uint64_t total, uint32_t k, uint32_t rotate,        \
                                                       uint32_t lanes, const StreamTables* tables, uint32_t* lane_bits,          \
                                                       uint32_t* lane_const, uint64_t threads) {                                 \
        __shared__ uint32_t enc[K * 256];                                                                                      \
        for (uint32_t s = 0; s < K; s++) stage(enc + 256 * s, tables[s].enc, 256);                                             \
        __syncthreads();                                                                                                       \
        uint64_t t = SHUFF_THREAD_INDEX;                                                                                       \
        if (t < threads) encode_count_thread<K>(t, in, total, rotate, lanes, enc, lane_bits, lane_const);                      \
    }
SHUFF_ENCODE_COUNT(1)
SHUFF_ENCODE_COUNT(2)
SHUFF_ENCODE_COUNT(4)

extern "C" __global__ void shuff_encode_plan(uint64_t total, uint32_t k, uint32_t lanes, const StreamTables* tables,
                                             const uint32_t* lane_bits, const uint32_t* lane_const, uint32_t* chunk_size,
                                             uint32_t* chunk_modes, uint32_t* stream_off, uint32_t* stream_const, uint32_t* lane_off,
                                             uint64_t n_chunks) {
    uint64_t c = SHUFF_THREAD_INDEX;
    if (c >= n_chunks) return;
    encode_plan_thread(c, total, k, lanes, tables, lane_bits, lane_const, chunk_size, chunk_modes, stream_off, stream_const, lane_off);
}

// Counts of a 1/stride sample per stream (k × 256, zeroed by the caller), gathered per block in
// shared memory first: exponent symbols crowd into a few bins, which global atomics would serialise.
extern "C" __global__ void shuff_sample_histogram(const uint8_t* in, uint64_t elements, uint32_t es, uint32_t k, uint32_t rotate,
                                                  uint32_t stride, uint32_t* counts, uint64_t threads) {
    __shared__ uint32_t local[SHUFF_MAX_STREAMS * 256];
    for (uint32_t i = threadIdx.x; i < k * 256; i += blockDim.x) local[i] = 0;
    __syncthreads();
    uint64_t t = SHUFF_THREAD_INDEX;
    if (t < threads) sample_histogram_thread(t, in, elements, es, k, rotate, stride, local);
    __syncthreads();
    for (uint32_t i = threadIdx.x; i < k * 256; i += blockDim.x)
        if (local[i]) atomicAdd(&counts[i], local[i]);
}

// One block of SCAN_THREADS: chunk starts, the frame's length, and the header bytes.
extern "C" __global__ void shuff_encode_scan(const uint32_t* chunk_size, uint64_t n_chunks, uint64_t base, uint64_t* chunk_start,
                                             uint64_t* frame_len, uint8_t* out, uint32_t header_len, uint64_t h0, uint64_t h1,
                                             uint64_t h2, uint64_t h3) {
    uint64_t total = block_scan(chunk_size, n_chunks, base, chunk_start);
    if (threadIdx.x == 0) {
        *frame_len = total;
        write_header(out, header_len, h0, h1, h2, h3);
    }
}

// One block of SCAN_THREADS: clears `error`, reads the chunk sizes (chunk table, or the rest of a
// one-chunk frame) and their starts.
extern "C" __global__ void shuff_decode_scan(const uint8_t* frame, uint64_t frame_len, uint64_t header_len, uint64_t n_chunks,
                                             uint32_t* chunk_size, uint64_t* chunk_start, uint32_t* error) {
    if (threadIdx.x == 0) *error = 0;
    __syncthreads();
    for (uint64_t c = threadIdx.x; c < n_chunks; c += SCAN_THREADS) {
        uint32_t size = 0;
        if (!decode_chunk_size(frame, frame_len, header_len, n_chunks, c, &size)) report(error, SHUFF_ERR_CHUNK_SIZE);
        chunk_size[c] = size;
    }
    __syncthreads();
    block_scan(chunk_size, n_chunks, header_len + (n_chunks > 1 ? 4 * n_chunks : 0), chunk_start);
}

#define SHUFF_ENCODE_WRITE(K)                                                                                                  \
    extern "C" __global__ void shuff_encode_write_k##K(                                                                        \
        const uint8_t* in, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes, const StreamTables* tables,            \
        const uint32_t* lane_bits, const uint32_t* chunk_size, const uint32_t* chunk_modes, const uint32_t* stream_off,        \
        const uint32_t* stream_const, const uint32_t* lane_off, const uint64_t* chunk_start, uint64_t table_at,                \
        uint64_t n_chunks, uint8_t* out, uint64_t threads) {                                                                   \
        __shared__ uint32_t enc[K * 256];                                                                                      \
        for (uint32_t s = 0; s < K; s++) stage(enc + 256 * s, tables[s].enc, 256);                                             \
        __syncthreads();                                                                                                       \
        uint64_t t = SHUFF_THREAD_INDEX;                                                                                       \
        if (t < threads)                                                                                                       \
            encode_write_thread<K>(t, in, total, rotate, lanes, enc, lane_bits, chunk_size, chunk_modes, stream_off,            \
                                   stream_const, lane_off, chunk_start, table_at, n_chunks, out);                              \
    }
SHUFF_ENCODE_WRITE(1)
SHUFF_ENCODE_WRITE(2)
SHUFF_ENCODE_WRITE(4)

extern "C" __global__ void shuff_decode_plan(const uint8_t* frame, uint64_t frame_len, uint64_t total, uint32_t k, uint32_t lanes,
                                             const uint64_t* chunk_start, const uint32_t* chunk_size, uint64_t n_chunks,
                                             uint32_t* chunk_modes, uint32_t* stream_off, uint32_t* stream_const, uint32_t* lane_off,
                                             uint32_t* lane_len, uint32_t* status, uint32_t* error) {
    uint64_t c = SHUFF_THREAD_INDEX;
    if (c >= n_chunks) return;
    decode_plan_thread(c, frame, frame_len, total, k, lanes, chunk_start, chunk_size, n_chunks, chunk_modes, stream_off, stream_const,
                       lane_off, lane_len, status, error);
}

// Dynamic shared memory: K * sizeof(StreamTables).
#define SHUFF_DECODE(K)                                                                                                        \
    extern "C" __global__ void SHUFF_BOUNDS shuff_decode_k##K(                                                                              \
        const uint8_t* frame, uint64_t frame_len, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes, const StreamTables* tables,         \
        const uint64_t* chunk_start, const uint32_t* chunk_modes, const uint32_t* stream_off, const uint32_t* stream_const,    \
        const uint32_t* lane_off, const uint32_t* lane_len, const uint32_t* status, uint8_t* out, uint32_t* error,             \
        uint64_t threads) {                                                                                                    \
        extern __shared__ __align__(16) uint32_t smem[];                                                                       \
        stage(smem, (const uint32_t*)tables, K * (uint32_t)(sizeof(StreamTables) / 4));                                        \
        __syncthreads();                                                                                                       \
        uint64_t t = SHUFF_THREAD_INDEX;                                                                                       \
        if (t < threads)                                                                                                       \
            decode_thread<K>(t, frame, frame_len, total, rotate, lanes, (const StreamTables*)smem, chunk_start, chunk_modes, stream_off,   \
                             stream_const, lane_off, lane_len, status, out, error);                                            \
    }
SHUFF_DECODE(1)
SHUFF_DECODE(2)
SHUFF_DECODE(4)

// CRC-32 of `data` in three steps (shuff_lane.cuh, "CRC-32 of tensor bytes"): spans, groups, all.
// The slice-by-4 tables are built per block in shared memory (4 KiB, a few operations a word).
extern "C" __global__ void shuff_crc_spans(const uint8_t* data, uint64_t total, uint64_t span, uint32_t* span_crc, uint64_t threads) {
    __shared__ uint32_t table[SHUFF_CRC_TABLE_WORDS];
    for (uint32_t i = threadIdx.x; i < SHUFF_CRC_TABLE_WORDS; i += blockDim.x) table[i] = crc_table_entry(i);
    __syncthreads();
    uint64_t t = SHUFF_THREAD_INDEX;
    if (t < threads) crc_span_thread(t, data, total, span, table, span_crc);
}

extern "C" __global__ void shuff_crc_groups(const uint32_t* span_crc, uint64_t n_spans, uint64_t total, uint64_t span, uint64_t group,
                                            uint32_t* group_crc, uint64_t threads) {
    uint64_t g = SHUFF_THREAD_INDEX;
    if (g < threads) crc_group_thread(g, span_crc, n_spans, total, span, group, group_crc);
}

extern "C" __global__ void shuff_crc_frame(const uint32_t* group_crc, uint64_t n_groups, uint64_t total, uint64_t group_bytes, uint32_t* crc) {
    if (SHUFF_THREAD_INDEX == 0) crc_frame_thread(group_crc, n_groups, total, group_bytes, crc);
}
