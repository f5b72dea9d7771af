//! Valid frames of real tensor bytes, then damaged: every frame either decodes to the original
//! (the damage missed everything that matters) or fails with a typed error. Frames carry a CRC-32
//! here, so a successful decode of damaged data would be a real finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shuff::{decode_three_stage_into, encode, encode_three_stage, DType, EncodeOptions, FrameInfo, KernelChoice, Layout};
use shuff_fuzz::{books, sample};

fuzz_target!(|data: &[u8]| {
    // [book and lane count][start: u16][len: u16][edits: (pos: u16, xor: u8)...]
    if data.len() < 5 {
        return;
    }
    let which = data[0] % 3;
    // Every lane geometry decodes on the CPU: the CPU's default 4, a GPU's 32–128, odd counts.
    let lanes = [4, 1, 3, 32, 255, 8, 7, 128][usize::from(data[0] / 3 % 8)];
    // And every lane loop and build (each stream's own kernel, or one forced on all).
    let choices = KernelChoice::all();
    let choice = choices[usize::from(data[0] / 24) % choices.len()];
    let s = sample();
    let start = usize::from(u16::from_le_bytes([data[1], data[2]])) * 2 % s.len();
    let len = (usize::from(u16::from_le_bytes([data[3], data[4]])) * 4).min(s.len() - start) & !1;
    let tensor = &s[start..start + len];
    let opts = EncodeOptions { checksum: true, parallel: false, lanes: Some(lanes) };
    let mut frame = match which {
        2 => encode_three_stage(DType::Bf16, Layout::Bytes, tensor, opts),
        b => encode(&books()[b as usize], tensor, opts),
    }
    .expect("whole bf16 elements");
    for edit in data[5..].chunks_exact(3) {
        let pos = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % frame.len();
        frame[pos] ^= edit[2];
        // An edit may also cut the frame short.
        if edit[2] == 0 {
            frame.truncate(pos);
            break;
        }
    }
    let decoded = match which {
        2 => FrameInfo::parse(&frame).and_then(|i| i.decoded_len()).and_then(|n| {
            if n > 1 << 22 {
                return Err(shuff::DecodeError::Truncated("too large for the fuzzer"));
            }
            let mut out = vec![0u8; n];
            decode_three_stage_into(&frame, &mut out).map(|()| out)
        }),
        b => FrameInfo::parse(&frame).and_then(|i| i.decoded_len()).and_then(|n| {
            let mut out = vec![0u8; n.min(1 << 22)];
            shuff::decode::decode_into_with(&books()[b as usize], &frame, &mut out, choice).map(|()| out)
        }),
    };
    if let Ok(out) = decoded {
        assert!(out == tensor, "damaged frame decoded to different data without an error");
    }
});
