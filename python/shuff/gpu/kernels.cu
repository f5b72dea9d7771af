// CUDA kernels of shuff's device coder: thin wrappers that stage each stream's tables in shared
// memory and call the per-thread code of shuff_lane.cuh (which host_emulation.cpp runs on the CPU
// in the tests). Compiled at run time by NVRTC (through CuPy); launched by shuff/gpu/__init__.py.
#include "shuff_lane.cuh"

// Copies `words` 32-bit words from global to shared memory with the whole block.
__device__ __forceinline__ void stage(uint32_t* dst, const uint32_t* src, uint32_t words) {
    for (uint32_t i = threadIdx.x; i < words; i += blockDim.x) dst[i] = src[i];
}

#define SHUFF_THREAD_INDEX ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x)

extern "C" __global__ void shuff_encode_count(const uint8_t* in, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes,
                                              const StreamTables* tables, uint32_t* lane_bits, uint32_t* lane_const, uint64_t threads) {
    __shared__ uint32_t enc[SHUFF_MAX_STREAMS * 256];
    for (uint32_t s = 0; s < k; s++) stage(enc + 256 * s, tables[s].enc, 256);
    __syncthreads();
    uint64_t t = SHUFF_THREAD_INDEX;
    if (t >= threads) return;
    switch (k) {
        case 1: encode_count_thread<1>(t, in, total, rotate, lanes, enc, lane_bits, lane_const); break;
        case 2: encode_count_thread<2>(t, in, total, rotate, lanes, enc, lane_bits, lane_const); break;
        case 4: encode_count_thread<4>(t, in, total, rotate, lanes, enc, lane_bits, lane_const); break;
    }
}

extern "C" __global__ void shuff_encode_plan(uint64_t total, uint32_t k, uint32_t lanes, const StreamTables* tables,
                                             const uint32_t* lane_bits, const uint32_t* lane_const, uint32_t* chunk_size,
                                             uint32_t* chunk_modes, uint32_t* stream_off, uint32_t* stream_const, uint32_t* lane_off,
                                             uint64_t n_chunks) {
    uint64_t c = SHUFF_THREAD_INDEX;
    if (c >= n_chunks) return;
    encode_plan_thread(c, total, k, lanes, tables, lane_bits, lane_const, chunk_size, chunk_modes, stream_off, stream_const, lane_off);
}

extern "C" __global__ void shuff_encode_write(const uint8_t* in, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes,
                                              const StreamTables* tables, const uint32_t* lane_bits, const uint32_t* chunk_size,
                                              const uint32_t* chunk_modes, const uint32_t* stream_off, const uint32_t* stream_const,
                                              const uint32_t* lane_off, const uint64_t* chunk_start, uint64_t table_at, uint64_t n_chunks,
                                              uint8_t* out, uint64_t threads) {
    __shared__ uint32_t enc[SHUFF_MAX_STREAMS * 256];
    for (uint32_t s = 0; s < k; s++) stage(enc + 256 * s, tables[s].enc, 256);
    __syncthreads();
    uint64_t t = SHUFF_THREAD_INDEX;
    if (t >= threads) return;
#define SHUFF_WRITE(K) encode_write_thread<K>(t, in, total, rotate, lanes, enc, lane_bits, chunk_size, chunk_modes, stream_off, \
                                              stream_const, lane_off, chunk_start, table_at, n_chunks, out)
    switch (k) {
        case 1: SHUFF_WRITE(1); break;
        case 2: SHUFF_WRITE(2); break;
        case 4: SHUFF_WRITE(4); break;
    }
}

extern "C" __global__ void shuff_decode_plan(const uint8_t* frame, uint64_t frame_len, uint64_t total, uint32_t k, uint32_t lanes,
                                             const uint64_t* chunk_start, const uint32_t* chunk_size, uint64_t n_chunks,
                                             uint32_t* chunk_modes, uint32_t* stream_off, uint32_t* stream_const, uint32_t* lane_off,
                                             uint32_t* lane_len, uint32_t* status, uint32_t* error) {
    uint64_t c = SHUFF_THREAD_INDEX;
    if (c >= n_chunks) return;
    decode_plan_thread(c, frame, frame_len, total, k, lanes, chunk_start, chunk_size, n_chunks, chunk_modes, stream_off, stream_const,
                       lane_off, lane_len, status, error);
}

// Dynamic shared memory: k * sizeof(StreamTables).
extern "C" __global__ void shuff_decode(const uint8_t* frame, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes,
                                        const StreamTables* tables, const uint64_t* chunk_start, const uint32_t* chunk_modes,
                                        const uint32_t* stream_off, const uint32_t* stream_const, const uint32_t* lane_off,
                                        const uint32_t* lane_len, const uint32_t* status, uint8_t* out, uint32_t* error, uint64_t threads) {
    extern __shared__ __align__(16) uint32_t smem[];
    stage(smem, (const uint32_t*)tables, k * (uint32_t)(sizeof(StreamTables) / 4));
    __syncthreads();
    const StreamTables* st = (const StreamTables*)smem;
    uint64_t t = SHUFF_THREAD_INDEX;
    if (t >= threads) return;
#define SHUFF_DECODE(K) decode_thread<K>(t, frame, total, rotate, lanes, st, chunk_start, chunk_modes, stream_off, stream_const, \
                                         lane_off, lane_len, status, out, error)
    switch (k) {
        case 1: SHUFF_DECODE(1); break;
        case 2: SHUFF_DECODE(2); break;
        case 4: SHUFF_DECODE(4); break;
    }
}
