//! Writes valid frames of the real sample (each prefixed with the fuzz target's codebook
//! selector byte) as the starting corpus of `frame_decode`, so the fuzzer begins deep inside the
//! decoder instead of at the magic bytes. `cargo run --release --example seeds -- corpus/frame_decode`
use shuff::{encode, encode_three_stage, DType, EncodeOptions, Layout};
use shuff_fuzz::{books, family, sample};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: seeds DIR");
    std::fs::create_dir_all(&dir).unwrap();
    let s = sample();
    for (i, len) in [0usize, 2, 64, 1000, 4096, 65536, 65536 + 2048, s.len() & !1].into_iter().enumerate() {
        let tensor = &s[..len];
        for (checksum, lanes) in [(false, 4), (true, 4), (false, 8), (false, 32), (true, 7), (false, 255)] {
            let opts = EncodeOptions { checksum, parallel: false, lanes: Some(lanes) };
            for which in 0..4u8 {
                let frame = match which {
                    2 => encode_three_stage(DType::Bf16, Layout::Bytes, tensor, opts).unwrap(),
                    3 => family().encode(tensor, opts, Some([0, 15, 0, 0])).unwrap(),
                    b => encode(&books()[usize::from(b)], tensor, opts).unwrap(),
                };
                let mut seed = vec![which];
                seed.extend_from_slice(&frame);
                std::fs::write(format!("{dir}/seed-{i}-{which}-{}-{lanes}", u8::from(checksum)), seed).unwrap();
            }
        }
    }
}
