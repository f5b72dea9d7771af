//! `shuff::decode` allocates its output: a header that claims more than the frame's bytes can
//! hold must be an error before anything is allocated (it used to abort on 2^40 elements).

use shuff::{decode, encode, Codebook, DType, EncodeOptions, FrameInfo, Layout};

#[test]
fn claims_beyond_the_bytes_present_are_refused_before_allocating() {
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 13) as u8).collect();
    let book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[shuff::stats::Histogram::of(&data).distribution().unwrap()], 12).unwrap();
    let frame = encode(&book, &data, EncodeOptions { checksum: true, ..Default::default() }).unwrap();
    assert_eq!(decode(&book, &frame).unwrap(), data);
    let info = FrameInfo::parse(&frame).unwrap();
    for elements in [1u64 << 40, 1 << 62, u64::MAX / 2] {
        let mut lying = FrameInfo { elements, ..info }.to_bytes();
        lying.extend_from_slice(&frame[info.header_len..]);
        assert!(decode(&book, &lying).is_err(), "{elements} elements");
    }
}

#[test]
fn constant_tensors_are_tiny_frames_that_still_decode() {
    // All zeros: every chunk is a constant stream, 64 KiB per ~6 bytes.
    let zeros = vec![0u8; 1 << 20];
    let book = Codebook::flat(DType::U8, Layout::Bytes);
    let frame = encode(&book, &zeros, EncodeOptions::default()).unwrap();
    assert!(frame.len() < 200, "{} bytes", frame.len());
    let info = FrameInfo::parse(&frame).unwrap();
    assert!(frame.len() >= info.min_frame_len().unwrap());
    assert_eq!(decode(&book, &frame).unwrap(), zeros);
}
