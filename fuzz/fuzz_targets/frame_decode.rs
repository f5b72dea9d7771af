//! Arbitrary bytes as a frame: the decoders must return a typed error or a buffer of exactly the
//! size the header announces, never panic or touch memory outside their buffers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shuff::{decode, decode_three_stage_into, FrameInfo, KernelChoice};
use shuff_fuzz::{books, family};

fuzz_target!(|data: &[u8]| {
    let Some((&which, frame)) = data.split_first() else { return };
    let Ok(info) = FrameInfo::parse(frame) else { return };
    let Ok(len) = info.decoded_len() else { return };
    // What `shuff::decode` checks before it allocates (no other cap: -rss_limit_mb catches an
    // allocation that follows a claim instead of the bytes).
    match info.min_frame_len() {
        Err(_) => return,
        Ok(min) if frame.len() < min => {
            assert!(decode(&books()[0], frame).is_err());
            return;
        }
        Ok(_) => {}
    }
    let mut out = vec![0u8; len];
    // Every lane loop and build meets the same hostile frames (the upper bits of `which`).
    let choices = KernelChoice::all();
    let choice = choices[usize::from(which / 4) % choices.len()];
    let _ = match which % 4 {
        2 => decode_three_stage_into(frame, &mut out),
        3 => family().decode_into_with(frame, &mut out, choice),
        b => shuff::decode::decode_into_with(&books()[b as usize], frame, &mut out, choice),
    };
});
