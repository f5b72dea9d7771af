//! Frames written by the version-1 encoder (tests/data/frames-v1) still decode, bit for bit, to
//! the inputs they were made from, which are rebuilt here from the committed samples.

mod common;

use common::*;
use shuff::{decode, decode_three_stage_into, CodebookSet, FrameInfo};
use std::path::Path;

fn vectors() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/frames-v1")
}

/// The input each vector was encoded from (as the generator described in tests/data/README.md cut it).
fn input(name: &str) -> Vec<u8> {
    let te = real_bf16(4);
    match name {
        "bf16-exponent" => te[..100_000].to_vec(),
        "bf16-bytes" => te[..40_000].to_vec(),
        "f32-planes" => bf16_to_f32(&te)[..140_000].to_vec(),
        "f16-exponent" => whisper()[100_000..170_000].to_vec(),
        "u8-bytes" => te[..30_001].to_vec(),
        other => panic!("no input for {other}"),
    }
}

#[test]
fn version_1_frames_still_decode_bit_for_bit() {
    let set = CodebookSet::from_json(&std::fs::read_to_string(vectors().join("books.json")).unwrap()).unwrap();
    assert_eq!(set.len(), 5);
    for (name, class) in set.classes() {
        let frame = std::fs::read(vectors().join(format!("{name}.shf"))).unwrap();
        let info = FrameInfo::parse(&frame).unwrap();
        assert_eq!((info.version, info.lanes, info.members), (1, 4, [0; 4]), "{name}");
        assert_eq!(decode(&class.codebook, &frame).unwrap(), input(name), "{name}");
    }
    let frame = std::fs::read(vectors().join("three-stage-bf16-exponent.shf")).unwrap();
    let mut out = vec![0u8; 100_000];
    decode_three_stage_into(&frame, &mut out).unwrap();
    assert_eq!(out, input("bf16-exponent"));
}

#[test]
fn version_2_frames_of_four_lanes_carry_the_same_chunks_as_version_1() {
    // Version 2 changed the header only: with 4 lanes the chunk area is byte-identical.
    let set = CodebookSet::from_json(&std::fs::read_to_string(vectors().join("books.json")).unwrap()).unwrap();
    for (name, class) in set.classes() {
        let v1 = std::fs::read(vectors().join(format!("{name}.shf"))).unwrap();
        let v1_info = FrameInfo::parse(&v1).unwrap();
        let opts = shuff::EncodeOptions { checksum: v1_info.checksum.is_some(), parallel: false, lanes: Some(shuff::frame::LANES) };
        let v2 = shuff::encode(&class.codebook, &input(name), opts).unwrap();
        let v2_info = FrameInfo::parse(&v2).unwrap();
        assert_eq!(v2_info.version, 2);
        assert_eq!(v1[v1_info.header_len..], v2[v2_info.header_len..], "{name}");
    }
}
