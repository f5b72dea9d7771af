//! Whole-pipeline round trips of the encoder and decoder on real tensors, plus hostile input.

use proptest::prelude::*;
use shuff::stats::{stream_histograms, Histogram};
use shuff::{
    decode, decode_three_stage_into, encode, encode_three_stage, max_frame_len, Codebook, DType, DecodeError, EncodeOptions,
    FrameInfo, Layout,
};
use std::path::Path;

fn sample_tensors(step: usize, pattern: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/data/minilm-sample/step{step:03}.safetensors"));
    let bytes = std::fs::read(path).expect("committed sample");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().filter(|n| n.contains(pattern)).cloned().collect();
    names.sort();
    names.iter().map(|n| st.tensor(n).unwrap().data().to_vec()).collect()
}

/// All FFN1 activations of a step concatenated: ~150 KB of real bf16, several chunks.
fn real_bf16(step: usize) -> Vec<u8> {
    sample_tensors(step, "ffn1_act.x").concat()
}

fn whisper() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/whisper-sample.safetensors");
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    names.iter().flat_map(|n| st.tensor(n).unwrap().data().to_vec()).collect()
}

fn bf16_to_f32(b: &[u8]) -> Vec<u8> {
    b.chunks_exact(2).flat_map(|e| (u32::from(u16::from_le_bytes([e[0], e[1]])) << 16).to_le_bytes()).collect()
}

/// Casts bf16 to an fp8 format with `e` exponent bits and `m` mantissa bits by truncation, with
/// saturation (good enough to get real fp8 statistics).
fn bf16_to_fp8(b: &[u8], e: u32, m: u32) -> Vec<u8> {
    let bias = (1i32 << (e - 1)) - 1;
    b.chunks_exact(2)
        .map(|x| {
            let v = u16::from_le_bytes([x[0], x[1]]);
            let sign = ((v >> 15) as u8) << 7;
            let exp = i32::from((v >> 7) & 0xff) - 127 + bias;
            let mant = ((v & 0x7f) >> (7 - m)) as u8;
            let max_exp = (1 << e) - 2;
            if exp <= 0 {
                sign
            } else if exp > max_exp {
                sign | ((max_exp as u8) << m) | ((1 << m) - 2)
            } else {
                sign | ((exp as u8) << m) | mant
            }
        })
        .collect()
}

fn train(dtype: DType, layout: Layout, data: &[u8]) -> Codebook {
    let hists = stream_histograms(dtype, layout, data).unwrap();
    let dists: Vec<_> = hists.iter().map(|h| h.distribution().unwrap_or_else(shuff::stats::Distribution::uniform)).collect();
    Codebook::from_distributions(dtype, layout, &dists, layout.default_max_len()).unwrap()
}

fn opts(checksum: bool) -> EncodeOptions {
    EncodeOptions { checksum, ..Default::default() }
}

#[test]
fn real_tensors_round_trip_in_every_dtype_and_layout() {
    let (train_bf16, test_bf16) = (real_bf16(0), real_bf16(4));
    let cases: Vec<(DType, Vec<u8>, Vec<u8>)> = vec![
        (DType::Bf16, train_bf16.clone(), test_bf16.clone()),
        (DType::F32, bf16_to_f32(&train_bf16), bf16_to_f32(&test_bf16)),
        (DType::F8E4M3, bf16_to_fp8(&train_bf16, 4, 3), bf16_to_fp8(&test_bf16, 4, 3)),
        (DType::F8E5M2, bf16_to_fp8(&train_bf16, 5, 2), bf16_to_fp8(&test_bf16, 5, 2)),
        (DType::U8, train_bf16.clone(), test_bf16.clone()),
        (DType::F16, whisper(), whisper()),
    ];
    for (dtype, train_data, test_data) in cases {
        for layout in Layout::ALL {
            let book = train(dtype, layout, &train_data);
            for checksum in [false, true] {
                let frame = encode(&book, &test_data, opts(checksum)).unwrap();
                assert!(frame.len() < test_data.len(), "{dtype}/{layout}: {} → {}", test_data.len(), frame.len());
                assert_eq!(decode(&book, &frame).unwrap(), test_data, "{dtype}/{layout}");
            }
            // Small messages take the single-chunk path.
            for len in [0, dtype.size(), 100 * dtype.size(), 4096] {
                let msg = &test_data[..len];
                let frame = encode(&book, msg, opts(true)).unwrap();
                assert_eq!(decode(&book, &frame).unwrap(), msg, "{dtype}/{layout} len {len}");
            }
        }
    }
}

#[test]
fn fixed_codebook_frames_match_the_predicted_size() {
    let book = train(DType::Bf16, Layout::Bytes, &real_bf16(0));
    let test = real_bf16(4);
    let frame = encode(&book, &test, opts(false)).unwrap();
    let predicted_bits = book.coded_bits(&stream_histograms(DType::Bf16, Layout::Bytes, &test).unwrap());
    let overhead = frame.len() as i64 - (predicted_bits / 8) as i64;
    // Header, chunk table, lane sizes and byte padding: tens of bytes per 64 KiB chunk.
    let chunks = test.len().div_ceil(65536) as i64;
    assert!((0..=16 + 40 * chunks).contains(&overhead), "overhead {overhead} bytes");
}

#[test]
fn large_messages_round_trip_through_parallel_chunks() {
    let base = real_bf16(4);
    let big: Vec<u8> = base.iter().cycle().take(3 << 20).copied().collect();
    for layout in [Layout::Bytes, Layout::Exponent] {
        let book = train(DType::Bf16, layout, &real_bf16(0));
        let frame = encode(&book, &big, opts(true)).unwrap();
        assert_eq!(FrameInfo::parse(&frame).unwrap().chunks().unwrap(), 48);
        assert_eq!(decode(&book, &frame).unwrap(), big);
        let serial = encode(&book, &big, EncodeOptions { checksum: true, parallel: false }).unwrap();
        assert_eq!(serial, frame, "parallel and serial encoders must produce the same frame");
    }
}

#[test]
fn three_stage_frames_round_trip() {
    let test = real_bf16(4);
    for layout in Layout::ALL {
        let frame = encode_three_stage(DType::Bf16, layout, &test, opts(true)).unwrap();
        let mut out = vec![0; test.len()];
        decode_three_stage_into(&frame, &mut out).unwrap();
        assert_eq!(out, test);
        let book = train(DType::Bf16, layout, &test);
        assert!(matches!(decode(&book, &frame), Err(DecodeError::WrongKind(_))));
    }
}

#[test]
fn another_codebook_is_detected_not_decoded() {
    let book = train(DType::Bf16, Layout::Bytes, &real_bf16(0));
    let other = train(DType::Bf16, Layout::Bytes, &sample_tensors(0, "weight_grad").concat());
    let frame = encode(&book, &real_bf16(4), opts(false)).unwrap();
    let err = decode(&other, &frame).unwrap_err();
    assert!(matches!(err, DecodeError::CodebookMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("{:08x}", book.fingerprint().0 as u32)) && msg.contains(&other.fingerprint().to_string()), "{msg}");
    let wrong_layout = train(DType::Bf16, Layout::Planes, &real_bf16(0));
    assert!(matches!(decode(&wrong_layout, &frame), Err(DecodeError::CodebookMismatch { .. })));
    let mut small = vec![0u8; 10];
    assert!(matches!(shuff::decode_into(&book, &frame, &mut small), Err(DecodeError::WrongOutputSize { .. })));
}

#[test]
fn every_bit_flip_and_truncation_fails_cleanly_or_decodes_the_original() {
    let test = &real_bf16(4)[..6000];
    for layout in [Layout::Bytes, Layout::Exponent] {
        let book = train(DType::Bf16, layout, &real_bf16(0));
        let frame = encode(&book, test, opts(true)).unwrap();
        for cut in 0..frame.len() {
            assert!(decode(&book, &frame[..cut]).is_err(), "truncation at {cut} decoded");
        }
        for bit in 0..frame.len() * 8 {
            let mut f = frame.clone();
            f[bit / 8] ^= 1 << (bit % 8);
            if let Ok(out) = decode(&book, &f) {
                assert_eq!(out, test, "flip of bit {bit} decoded to other data despite the checksum");
            }
        }
    }
}

#[test]
fn constant_streams_take_one_byte() {
    let book = train(DType::Bf16, Layout::Exponent, &real_bf16(0));
    let zeros = vec![0u8; 100_000];
    let frame = encode(&book, &zeros, opts(false)).unwrap();
    assert!(frame.len() < 64, "constant message took {} bytes", frame.len());
    assert_eq!(decode(&book, &frame).unwrap(), zeros);
}

/// The promised bound: never more than input + header + 8 bytes per 64 KiB chunk.
fn bound(len: usize) -> usize {
    len + 16 + 8 * len.div_ceil(65536).max(1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_round_trip_with_arbitrary_codebooks(
        data in prop::collection::vec(any::<u8>(), 0..200_000),
        weights in prop::collection::vec(0u64..1000, 256),
        layout in prop::sample::select(Layout::ALL.to_vec()),
        dtype in prop::sample::select(DType::ALL.to_vec()),
        max_len in 8u32..=16,
    ) {
        let len = data.len() / dtype.size() * dtype.size();
        let data = &data[..len];
        let mut h = Histogram::new();
        h.counts.copy_from_slice(&weights);
        let d = h.distribution().unwrap_or_else(shuff::stats::Distribution::uniform);
        let book = Codebook::from_distributions(dtype, layout, &vec![d; layout.stream_count(dtype)], max_len).unwrap();
        let frame = encode(&book, data, opts(true)).unwrap();
        prop_assert!(frame.len() <= bound(data.len()), "{} bytes → {}", data.len(), frame.len());
        prop_assert!(frame.len() <= max_frame_len(dtype, layout, data.len()));
        prop_assert_eq!(decode(&book, &frame).unwrap(), data);
    }

    #[test]
    fn arbitrary_frames_never_panic(frame in prop::collection::vec(any::<u8>(), 0..4000), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let book = Codebook::flat(DType::Bf16, Layout::Bytes);
        // Random bytes, and random bytes behind a valid header.
        let _ = decode(&book, &frame);
        let mut f = b"Sh\x01\x00\x80\x01".to_vec();
        f.extend_from_slice(&(book.fingerprint().0 as u32).to_le_bytes());
        f.extend_from_slice(&tail);
        let _ = decode(&book, &f);
        let mut out = vec![0u8; 256];
        let _ = decode_three_stage_into(&frame, &mut out);
    }
}

/// Most symbols get 14–16-bit codes, so most pairs are too long for the two-symbol encode table and
/// take the encoder's slow path; the decoder meets long codes on its slow path too.
#[test]
fn long_codes_round_trip_through_the_slow_paths() {
    let mut h = Histogram::new();
    for (s, c) in h.counts.iter_mut().enumerate() {
        *c = 1 << (40 - s.min(40));
    }
    let book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[h.distribution().unwrap()], 16).unwrap();
    let code = &book.streams()[0];
    let long_pairs = code.pair_encode_table().iter().filter(|&&e| e == 0).count();
    assert!(long_pairs > 30_000, "{long_pairs} pairs do not fit the table");
    // Every symbol, in every order of pairs, plus runs of short codes between them.
    let mut data: Vec<u8> = (0..=255u8).flat_map(|a| (0..=255u8).flat_map(move |b| [a, b, 0, 1])).collect();
    data.truncate(data.len() - 3);
    for checksum in [false, true] {
        let frame = encode(&book, &data, opts(checksum)).unwrap();
        assert_eq!(decode(&book, &frame).unwrap(), data);
    }
}
