//! Whole-pipeline round trips of the encoder and decoder on real tensors, plus hostile input.

mod common;

use common::*;
use proptest::prelude::*;
use shuff::stats::{stream_histograms, Histogram};
use shuff::{
    decode, decode_three_stage_into, encode, encode_three_stage, max_frame_len, Codebook, DType, DecodeError, EncodeOptions,
    FrameInfo, KernelChoice, Layout, LaneKernel, EIGHT_LANES_MIN_BYTES,
};

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
        let serial = encode(&book, &big, EncodeOptions { checksum: true, parallel: false, ..Default::default() }).unwrap();
        assert_eq!(serial, frame, "parallel and serial encoders must produce the same frame");
        // The checksum, put together from the chunks' own, is the CRC-32 of the tensor bytes.
        assert_eq!(FrameInfo::parse(&frame).unwrap().checksum, Some(crc32fast::hash(&big)));
    }
}

#[test]
fn a_wrong_checksum_is_caught_on_the_serial_and_the_parallel_path() {
    let book = train(DType::Bf16, Layout::Exponent, &real_bf16(0));
    let data = real_bf16(4);
    // One chunk, four (decoded one after another, their CRCs combined) and 24 (in parallel where
    // there are threads).
    for len in [4096, 3 * 65536 + 100, 3 << 19] {
        let msg: Vec<u8> = data.iter().cycle().take(len).copied().collect();
        let mut frame = encode(&book, &msg, opts(true)).unwrap();
        let info = FrameInfo::parse(&frame).unwrap();
        // The checksum is the header's last field.
        let at = info.header_len - 4;
        assert_eq!(frame[at..info.header_len], info.checksum.unwrap().to_le_bytes());
        frame[at] ^= 1;
        match decode(&book, &frame) {
            Err(DecodeError::ChecksumMismatch { expected, found }) => {
                assert_eq!(found, crc32fast::hash(&msg));
                assert_eq!(expected, found ^ 1);
            }
            other => panic!("{len} bytes: a flipped checksum gave {other:?}"),
        }
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

/// Streams whose code is flat, ahead of the first coded one, are written by the layout transform
/// straight into the chunk: each stays there raw, or takes one byte when it is constant, the raw
/// streams after a constant one moving up to close the gap — the same frame as coding them
/// through scratch.
#[test]
fn flat_streams_are_stored_in_place_raw_or_constant() {
    let mut skewed = Histogram::new();
    skewed.counts.iter_mut().enumerate().for_each(|(s, c)| *c = if s % 16 == 0 { 10_000 } else { 1 });
    let d = skewed.distribution().unwrap();
    let coded = Codebook::from_distributions(DType::F32, Layout::Planes, &[d.clone(), d.clone(), d.clone(), d], 12).unwrap();
    let lengths = |s: usize| coded.streams()[s].lengths().to_vec();
    // f32 `planes`: the two low bytes flat (stored raw), the two high bytes coded.
    let book = Codebook::from_lengths(DType::F32, Layout::Planes, &[vec![8; 256], vec![8; 256], lengths(2), lengths(3)]).unwrap();
    let n = 4096;
    let element = |i: usize, constant: [bool; 2]| {
        let noise = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes();
        let b = |k: usize| if constant[k] { 7 } else { noise[k + 1] };
        [b(0), b(1), (noise[3] & 3) * 16, 16 * (i % 3) as u8]
    };
    let frame_of = |constant: [bool; 2]| {
        let data: Vec<u8> = (0..n).flat_map(|i| element(i, constant)).collect();
        let frame = encode(&book, &data, opts(true)).unwrap();
        assert_eq!(decode(&book, &frame).unwrap(), data, "constant streams {constant:?}");
        frame
    };
    let all_raw = frame_of([false, false]);
    for constant in [[true, false], [false, true], [true, true]] {
        let frame = frame_of(constant);
        let info = FrameInfo::parse(&frame).unwrap();
        // One chunk, so no chunk table: the chunk's mode byte follows the header.
        let modes = frame[info.header_len];
        for s in 0..2 {
            assert_eq!((modes >> (2 * s)) & 3, if constant[s] { 2 } else { 1 }, "stream {s} of {constant:?}");
        }
        assert_eq!((modes >> 4) & 15, 0, "the high bytes are coded");
        let saved = constant.iter().filter(|&&c| c).count() * (n - 1);
        assert_eq!(frame.len(), all_raw.len() - saved, "{constant:?}");
    }
    // Across many chunks, in parallel too.
    let data: Vec<u8> = (0..300_000).flat_map(|i| element(i, [i / 20_000 % 2 == 0, i / 30_000 % 2 == 1])).collect();
    let frame = encode(&book, &data, opts(true)).unwrap();
    assert_eq!(decode(&book, &frame).unwrap(), data);
}

/// The promised bound: never more than input + header + 8 bytes per 64 KiB chunk.
fn bound(len: usize) -> usize {
    len + shuff::frame::MAX_HEADER_BYTES + 8 * len.div_ceil(65536).max(1)
}

/// The lane geometry is a frame parameter: every count from 1 to 255 round-trips on real tensors
/// of every layout, the CPU decoder reading them all (four at a time through its lockstep loop,
/// the rest one by one), and the frame grows by the lane sizes alone.
#[test]
fn every_lane_count_round_trips_on_real_tensors() {
    let test = real_bf16(4);
    let cases = [(DType::Bf16, test.clone()), (DType::F32, bf16_to_f32(&test[..60_000])), (DType::F16, whisper()[..90_000].to_vec())];
    for (dtype, data) in cases {
        let train_data = if dtype == DType::F16 { whisper() } else if dtype == DType::F32 { bf16_to_f32(&real_bf16(0)) } else { real_bf16(0) };
        for layout in Layout::ALL {
            let book = train(dtype, layout, &train_data);
            let four = encode(&book, &data, opts(false)).unwrap();
            for lanes in [1, 2, 3, 4, 5, 7, 8, 16, 31, 32, 64, 100, 255] {
                let o = EncodeOptions { lanes: Some(lanes), ..opts(true) };
                let frame = encode(&book, &data, o).unwrap();
                let info = FrameInfo::parse(&frame).unwrap();
                assert_eq!(info.lanes, lanes);
                assert_eq!(decode(&book, &frame).unwrap(), data, "{dtype}/{layout} with {lanes} lanes");
                let serial = encode(&book, &data, EncodeOptions { parallel: false, ..o }).unwrap();
                assert_eq!(serial, frame, "{dtype}/{layout} {lanes} lanes: parallel and serial differ");
                if lanes <= 32 {
                    // Extra lane sizes (2 bytes each per coded stream and chunk) plus ≤ 1 byte of
                    // padding per extra lane, and the checksum.
                    let extra = 3 * (lanes.max(4) - 4) * layout.stream_count(dtype) * data.len().div_ceil(65536) + 8;
                    assert!(frame.len() <= four.len() + extra, "{dtype}/{layout} {lanes} lanes: {} vs {}", frame.len(), four.len());
                }
            }
        }
    }
    let book = train(DType::Bf16, Layout::Bytes, &real_bf16(0));
    for lanes in [0, 256, 1000] {
        let o = EncodeOptions { lanes: Some(lanes), ..opts(false) };
        assert!(matches!(encode(&book, &test, o), Err(shuff::EncodeError::BadLaneCount(_))));
    }
}

/// Lanes shorter than the table window, empty lanes (more lanes than symbols) and a stream too
/// short for its lane sizes (stored raw).
#[test]
fn tiny_messages_with_many_lanes() {
    let book = train(DType::Bf16, Layout::Exponent, &real_bf16(0));
    let test = real_bf16(4);
    for len in [2, 4, 64, 200, 1000, 5000] {
        for lanes in [1, 4, 32, 255] {
            let frame = encode(&book, &test[..len], EncodeOptions { lanes: Some(lanes), ..opts(true) }).unwrap();
            assert_eq!(decode(&book, &frame).unwrap(), &test[..len], "{len} bytes, {lanes} lanes");
        }
    }
}

#[test]
fn a_frame_naming_another_family_member_is_refused_by_a_single_codebook() {
    let book = train(DType::Bf16, Layout::Exponent, &real_bf16(0));
    let mut frame = encode(&book, &real_bf16(4)[..4000], opts(false)).unwrap();
    let info = FrameInfo::parse(&frame).unwrap();
    // The member byte sits just before the fingerprint.
    let at = info.header_len - 5;
    frame[at] = 0x10;
    assert_eq!(FrameInfo::parse(&frame).unwrap().members, [0, 1, 0, 0]);
    let err = decode(&book, &frame).unwrap_err();
    assert!(err.to_string().contains("member 1"), "{err}");
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
        lanes in prop::sample::select(vec![1usize, 3, 4, 8, 32, 255]),
    ) {
        let len = data.len() / dtype.size() * dtype.size();
        let data = &data[..len];
        let mut h = Histogram::new();
        h.counts.copy_from_slice(&weights);
        let d = h.distribution().unwrap_or_else(shuff::stats::Distribution::uniform);
        let book = Codebook::from_distributions(dtype, layout, &vec![d; layout.stream_count(dtype)], max_len).unwrap();
        let frame = encode(&book, data, EncodeOptions { lanes: Some(lanes), ..opts(true) }).unwrap();
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
        // The same behind a version-2 header of 1..=255 lanes.
        let mut f = b"Sh\x02\x00\x80\x01".to_vec();
        f.push(tail.first().copied().unwrap_or(1).max(1));
        f.push(0);
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
    let long_pairs = code.pair_encode_table().lens.iter().filter(|&&len| len == 0).count();
    assert!(long_pairs > 30_000, "{long_pairs} pairs do not fit the table");
    // Every symbol, in every order of pairs, plus runs of short codes between them.
    let mut data: Vec<u8> = (0..=255u8).flat_map(|a| (0..=255u8).flat_map(move |b| [a, b, 0, 1])).collect();
    data.truncate(data.len() - 3);
    for checksum in [false, true] {
        let frame = encode(&book, &data, opts(checksum)).unwrap();
        assert_eq!(decode(&book, &frame).unwrap(), data);
    }
}

/// Every lane loop and build (`KernelChoice::all`) decodes `frame` to `data`.
fn every_kernel_decodes(book: &Codebook, frame: &[u8], data: &[u8], case: &str) {
    for choice in KernelChoice::all() {
        let mut out = vec![0u8; data.len()];
        shuff::decode::decode_into_with(book, frame, &mut out, choice).unwrap();
        assert!(out == data, "{case} {choice:?}");
    }
}

/// Flips one byte (`^ xor`) in each of `places` places of the chunk area, `stride` apart modulo
/// its length: every lane loop and build refuses the damaged frame or decodes it to `data`.
fn damage_is_refused_or_harmless(book: &Codebook, frame: &[u8], data: &[u8], places: usize, stride: usize, xor: u8) {
    for i in 0..places {
        let mut bad = frame.to_vec();
        let at = 32 + (i * stride) % (bad.len() - 32);
        bad[at] ^= xor;
        for choice in KernelChoice::all() {
            let mut out = vec![0u8; data.len()];
            if shuff::decode::decode_into_with(book, &bad, &mut out, choice).is_ok() {
                assert!(out == data, "damage at {at} decoded to other bytes with {choice:?}");
            }
        }
    }
}

/// Every lane loop (single-, pair- and quad-symbol lookups; BMI2 and portable builds) decodes the
/// same frames to the same bytes, whichever kernel each stream's code would choose: real tensors in
/// every layout, a code of long (14–16-bit) codes, lane counts that leave lanes to the careful path,
/// and damaged frames (which every kernel must refuse or decode to the original).
#[test]
fn every_lane_kernel_decodes_the_same_frames_alike() {
    let mut long = Histogram::new();
    for (s, c) in long.counts.iter_mut().enumerate() {
        *c = 1 << (40 - s.min(40));
    }
    let long_book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[long.distribution().unwrap()], 16).unwrap();
    let long_data: Vec<u8> = (0..=255u8).flat_map(|a| (0..=255u8).flat_map(move |b| [a, b, 0, 1])).take(100_000).collect();
    let (train_bf16, test_bf16) = (real_bf16(0), real_bf16(4));
    let mut cases: Vec<(Codebook, Vec<u8>)> = Layout::ALL.iter().map(|&l| (train(DType::Bf16, l, &train_bf16), test_bf16.clone())).collect();
    cases.push((long_book, long_data));
    let mut kernels_chosen = Vec::new();
    for (book, data) in &cases {
        kernels_chosen.extend(book.streams().iter().map(|c| c.lane_kernel()));
        for lanes in [4, 8, 5, 32] {
            let frame = encode(book, data, EncodeOptions { lanes: Some(lanes), ..opts(true) }).unwrap();
            every_kernel_decodes(book, &frame, data, &format!("{} with {lanes} lanes", book.layout()));
            // Damage: flip one byte in each of 40 places of the chunk area.
            damage_is_refused_or_harmless(book, &frame, data, 40, 7919, 0x5a);
        }
    }
    // The cases exercise every kernel as its code's own choice too.
    for kernel in [LaneKernel::Single, LaneKernel::Pair, LaneKernel::Quad] {
        assert!(kernels_chosen.contains(&kernel), "no code chose {kernel:?}: {kernels_chosen:?}");
    }
}

/// Lanes that end far apart: one lane's quarter of the message is zeros (1–2-bit codes), so its
/// multi-symbol steps fill its output in a fraction of the rounds the other lanes need, and it
/// idles (reading zeros, writing to a sink) while they finish in the lockstep loop; the other
/// way round, three quarters of zeros leave one lane running alone. Every kernel must decode the
/// same bytes, and damage anywhere in the long lanes must still be refused or decode the original.
#[test]
fn lanes_that_end_far_apart_decode_alike_with_every_kernel() {
    let book = train(DType::Bf16, Layout::Exponent, &real_bf16(0));
    let test = &real_bf16(4)[..65536];
    let quarter = test.len() / 4;
    let mut one_short = test.to_vec();
    one_short[..quarter].fill(0);
    let mut one_long = vec![0u8; test.len()];
    one_long[3 * quarter..].copy_from_slice(&test[3 * quarter..]);
    for data in [one_short, one_long] {
        let frame = encode(&book, &data, opts(true)).unwrap();
        every_kernel_decodes(&book, &frame, &data, "");
        damage_is_refused_or_harmless(&book, &frame, &data, 60, 104_729, 0x21);
    }
}

/// The lane count the CPU encoder picks when not told ([`cpu_lanes`]): eight for messages from
/// [`EIGHT_LANES_MIN_BYTES`] whose codes include a stream the decoder runs eight lanes of (bf16
/// `exponent` mantissas: one symbol a lookup, every code in the primary table), four otherwise
/// (`bytes`: two symbols a lookup); a count given wins. Frames carry the choice and decode.
#[test]
fn the_default_lane_count_is_eight_only_where_the_eight_lane_loop_runs() {
    let test = real_bf16(4);
    let exponent = train(DType::Bf16, Layout::Exponent, &real_bf16(0));
    let bytes = train(DType::Bf16, Layout::Bytes, &real_bf16(0));
    assert!(exponent.streams().iter().any(|c| c.has_eight_lane_loop()));
    assert!(!bytes.streams().iter().any(|c| c.has_eight_lane_loop()));
    let min = EIGHT_LANES_MIN_BYTES;
    for (book, len, want) in [(&exponent, 65536, 8), (&exponent, min, 8), (&exponent, min - 2, 4), (&exponent, 4096, 4), (&bytes, 65536, 4)] {
        let frame = encode(book, &test[..len], opts(false)).unwrap();
        assert_eq!(FrameInfo::parse(&frame).unwrap().lanes, want, "{} layout, {len} bytes", book.layout());
        assert_eq!(decode(book, &frame).unwrap(), &test[..len]);
    }
    let four = encode(&exponent, &test[..65536], EncodeOptions { lanes: Some(4), ..opts(false) }).unwrap();
    assert_eq!(FrameInfo::parse(&four).unwrap().lanes, 4);
}

/// Real gradients of a later step, coded by the class code and by its exponent-shift family (the
/// encoder choosing each stream's member from a sample): the family's frame is never
/// meaningfully larger, and it decodes with the family.
#[test]
fn shift_family_codes_real_gradients_no_larger_than_the_class_code() {
    use shuff::Family;
    use std::sync::Arc;
    for pattern in ["weight_grad", "ffn1_act_grad", "ffn2_act_grad", "ffn1_act.x"] {
        let train_data: Vec<u8> = (0..4).flat_map(|s| sample_tensors(s, pattern).concat()).collect();
        let test: Vec<u8> = sample_tensors(4, pattern).concat();
        let book = Arc::new(train(DType::Bf16, Layout::Exponent, &train_data));
        let family = Family::exponent_shift(Arc::clone(&book), &[-1, 1]);
        let single = encode(&book, &test, opts(false)).unwrap();
        let frame = family.encode(&test, opts(false), None).unwrap();
        assert!(frame.len() <= single.len() + single.len() / 1000, "{pattern}: family {} vs class code {}", frame.len(), single.len());
        let mut out = vec![0u8; test.len()];
        family.decode_into(&frame, &mut out).unwrap();
        assert_eq!(out, test, "{pattern}");
        eprintln!("{pattern}: {} bytes → class code {} / shift family {}", test.len(), single.len(), frame.len());
    }
}
