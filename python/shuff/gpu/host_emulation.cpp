// The device coder's kernels as plain loops over the same thread indices, compiled for the CPU:
// the tests (python/tests/test_gpu_logic.py) run the exact per-thread code of shuff_lane.cuh
// through the same orchestration as the GPU path and check it bit for bit against the Rust coder.
// Threads run one after another, so this is a reference, not a fast path.
#include "shuff_lane.cuh"

extern "C" {

void shuff_encode_count(const uint8_t* in, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes, const StreamTables* tables,
                        uint32_t* lane_bits, uint32_t* lane_const, uint64_t threads) {
    uint32_t enc[SHUFF_MAX_STREAMS * 256];
    for (uint32_t s = 0; s < k; s++) memcpy(enc + 256 * s, tables[s].enc, sizeof tables[s].enc);
    for (uint64_t t = 0; t < threads; t++) {
        switch (k) {
            case 1: encode_count_thread<1>(t, in, total, rotate, lanes, enc, lane_bits, lane_const); break;
            case 2: encode_count_thread<2>(t, in, total, rotate, lanes, enc, lane_bits, lane_const); break;
            case 4: encode_count_thread<4>(t, in, total, rotate, lanes, enc, lane_bits, lane_const); break;
        }
    }
}

void shuff_encode_plan(uint64_t total, uint32_t k, uint32_t lanes, const StreamTables* tables, const uint32_t* lane_bits,
                       const uint32_t* lane_const, uint32_t* chunk_size, uint32_t* chunk_modes, uint32_t* stream_off,
                       uint32_t* stream_const, uint32_t* lane_off, uint64_t n_chunks) {
    for (uint64_t c = 0; c < n_chunks; c++)
        encode_plan_thread(c, total, k, lanes, tables, lane_bits, lane_const, chunk_size, chunk_modes, stream_off, stream_const, lane_off);
}

void shuff_sample_histogram(const uint8_t* in, uint64_t elements, uint32_t es, uint32_t k, uint32_t rotate, uint32_t stride,
                            uint32_t* counts, uint64_t threads) {
    for (uint64_t t = 0; t < threads; t++) sample_histogram_thread(t, in, elements, es, k, rotate, stride, counts);
}

static uint64_t serial_scan(const uint32_t* size, uint64_t n, uint64_t base, uint64_t* start) {
    for (uint64_t c = 0; c < n; c++) {
        start[c] = base;
        base += size[c];
    }
    return base;
}

void shuff_encode_scan(const uint32_t* chunk_size, uint64_t n_chunks, uint64_t base, uint64_t* chunk_start, uint64_t* frame_len,
                       uint8_t* out, uint32_t header_len, uint64_t h0, uint64_t h1, uint64_t h2, uint64_t h3) {
    *frame_len = serial_scan(chunk_size, n_chunks, base, chunk_start);
    write_header(out, header_len, h0, h1, h2, h3);
}

void shuff_decode_scan(const uint8_t* frame, uint64_t frame_len, uint64_t header_len, uint64_t n_chunks, uint32_t* chunk_size,
                       uint64_t* chunk_start, uint32_t* error) {
    *error = 0;
    for (uint64_t c = 0; c < n_chunks; c++) {
        uint32_t size = 0;
        if (!decode_chunk_size(frame, frame_len, header_len, n_chunks, c, &size)) report(error, SHUFF_ERR_CHUNK_SIZE);
        chunk_size[c] = size;
    }
    serial_scan(chunk_size, n_chunks, header_len + (n_chunks > 1 ? 4 * n_chunks : 0), chunk_start);
}

void shuff_encode_write(const uint8_t* in, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes, const StreamTables* tables,
                        const uint32_t* lane_bits, const uint32_t* chunk_size, const uint32_t* chunk_modes, const uint32_t* stream_off,
                        const uint32_t* stream_const, const uint32_t* lane_off, const uint64_t* chunk_start, uint64_t table_at,
                        uint64_t n_chunks, uint8_t* out, uint64_t threads) {
    uint32_t enc[SHUFF_MAX_STREAMS * 256];
    for (uint32_t s = 0; s < k; s++) memcpy(enc + 256 * s, tables[s].enc, sizeof tables[s].enc);
    for (uint64_t t = 0; t < threads; t++) {
#define SHUFF_WRITE(K) encode_write_thread<K>(t, in, total, rotate, lanes, enc, lane_bits, chunk_size, chunk_modes, stream_off, \
                                              stream_const, lane_off, chunk_start, table_at, n_chunks, out)
        switch (k) {
            case 1: SHUFF_WRITE(1); break;
            case 2: SHUFF_WRITE(2); break;
            case 4: SHUFF_WRITE(4); break;
        }
    }
}

void shuff_decode_plan(const uint8_t* frame, uint64_t frame_len, uint64_t total, uint32_t k, uint32_t lanes, const uint64_t* chunk_start,
                       const uint32_t* chunk_size, uint64_t n_chunks, uint32_t* chunk_modes, uint32_t* stream_off, uint32_t* stream_const,
                       uint32_t* lane_off, uint32_t* lane_len, uint32_t* status, uint32_t* error) {
    for (uint64_t c = 0; c < n_chunks; c++)
        decode_plan_thread(c, frame, frame_len, total, k, lanes, chunk_start, chunk_size, n_chunks, chunk_modes, stream_off,
                           stream_const, lane_off, lane_len, status, error);
}

void shuff_decode(const uint8_t* frame, uint64_t frame_len, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes, const StreamTables* tables,
                  const uint64_t* chunk_start, const uint32_t* chunk_modes, const uint32_t* stream_off, const uint32_t* stream_const,
                  const uint32_t* lane_off, const uint32_t* lane_len, const uint32_t* status, uint8_t* out, uint32_t* error,
                  uint64_t threads) {
    for (uint64_t t = 0; t < threads; t++) {
#define SHUFF_DECODE(K) decode_thread<K>(t, frame, frame_len, total, rotate, lanes, tables, chunk_start, chunk_modes, stream_off, stream_const, \
                                         lane_off, lane_len, status, out, error)
        switch (k) {
            case 1: SHUFF_DECODE(1); break;
            case 2: SHUFF_DECODE(2); break;
            case 4: SHUFF_DECODE(4); break;
        }
    }
}

void shuff_crc_spans(const uint8_t* data, uint64_t total, uint64_t span, uint32_t* span_crc, uint64_t threads) {
    uint32_t table[SHUFF_CRC_TABLE_WORDS];
    for (uint32_t i = 0; i < SHUFF_CRC_TABLE_WORDS; i++) table[i] = crc_table_entry(i);
    for (uint64_t t = 0; t < threads; t++) crc_span_thread(t, data, total, span, table, span_crc);
}

void shuff_crc_groups(const uint32_t* span_crc, uint64_t n_spans, uint64_t total, uint64_t span, uint64_t group, uint32_t* group_crc,
                      uint64_t threads) {
    for (uint64_t g = 0; g < threads; g++) crc_group_thread(g, span_crc, n_spans, total, span, group, group_crc);
}

void shuff_crc_frame(const uint32_t* group_crc, uint64_t n_groups, uint64_t total, uint64_t group_bytes, uint32_t* crc) {
    crc_frame_thread(group_crc, n_groups, total, group_bytes, crc);
}

// The per-stream-count names the device launches (kernels.cu instantiates one kernel per k).
#define SHUFF_ALIASES(K)                                                                                                       \
    void shuff_encode_count_k##K(const uint8_t* in, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes,              \
                                 const StreamTables* tables, uint32_t* lane_bits, uint32_t* lane_const, uint64_t threads) {   \
        shuff_encode_count(in, total, k, rotate, lanes, tables, lane_bits, lane_const, threads);                              \
    }                                                                                                                          \
    void shuff_encode_write_k##K(const uint8_t* in, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes,              \
                                 const StreamTables* tables, const uint32_t* lane_bits, const uint32_t* chunk_size,           \
                                 const uint32_t* chunk_modes, const uint32_t* stream_off, const uint32_t* stream_const,       \
                                 const uint32_t* lane_off, const uint64_t* chunk_start, uint64_t table_at, uint64_t n_chunks, \
                                 uint8_t* out, uint64_t threads) {                                                            \
        shuff_encode_write(in, total, k, rotate, lanes, tables, lane_bits, chunk_size, chunk_modes, stream_off, stream_const,  \
                           lane_off, chunk_start, table_at, n_chunks, out, threads);                                          \
    }                                                                                                                          \
    void shuff_decode_k##K(const uint8_t* frame, uint64_t frame_len, uint64_t total, uint32_t k, uint32_t rotate, uint32_t lanes,                 \
                           const StreamTables* tables, const uint64_t* chunk_start, const uint32_t* chunk_modes,              \
                           const uint32_t* stream_off, const uint32_t* stream_const, const uint32_t* lane_off,                \
                           const uint32_t* lane_len, const uint32_t* status, uint8_t* out, uint32_t* error, uint64_t threads) {\
        shuff_decode(frame, frame_len, total, k, rotate, lanes, tables, chunk_start, chunk_modes, stream_off, stream_const, lane_off,     \
                     lane_len, status, out, error, threads);                                                                  \
    }
SHUFF_ALIASES(1)
SHUFF_ALIASES(2)
SHUFF_ALIASES(4)

}  // extern "C"
