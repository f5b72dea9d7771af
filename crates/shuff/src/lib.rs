//! # shuff — single-stage Huffman coding of ML tensors
//!
//! Tensors of one kind (weights, activations, gradients of one layer type) have nearly the same
//! byte statistics across layers, shards and training steps. shuff builds a fixed [`Codebook`] per
//! kind ("class") ahead of time, from the average distribution of earlier batches, so that
//! compressing a message is a table lookup per symbol: no counting, no tree building, and no
//! codebook inside the message.
//!
//! The pipeline, and the module for each step:
//!
//! ```text
//! tensor bytes ─[layout]─▶ symbol streams ─[stats]─▶ distributions ─[huffman]─▶ code lengths
//!                                                                          └─[codebook]─▶ Codebook
//! ```
//!
//! ```
//! use shuff::{Codebook, DType, Layout, stats::Histogram};
//! // Train a one-stream codebook for bytes that are mostly small.
//! let sample: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
//! let dist = Histogram::of(&sample).distribution().unwrap();
//! let book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[dist], 12).unwrap();
//! assert!(book.streams()[0].lengths().iter().all(|&l| l >= 1 && l <= 12));
//! ```

#![warn(missing_docs)]

/// `$avx2` — a call of a function compiled with `#[target_feature(enable = "avx2")]` — where the
/// CPU has AVX2, else `$portable`. The one run-time dispatch for AVX2 code (layout transforms,
/// the member choice's sample).
macro_rules! avx2_or {
    ($avx2:expr, $portable:expr) => {{
        #[cfg(target_arch = "x86_64")]
        let result = if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { $avx2 }
        } else {
            $portable
        };
        #[cfg(not(target_arch = "x86_64"))]
        let result = $portable;
        result
    }};
}

pub mod codebook;
pub mod dtype;
pub mod huffman;
pub mod layout;
pub mod stats;

pub use codebook::{Codebook, CodebookError, Fingerprint, KernelChoice, LaneKernel, StreamCode, DEFAULT_MAX_LEN, MAX_CODE_LEN};
pub use dtype::DType;
pub use layout::Layout;
pub mod set;
pub mod auto;
pub mod classes;
pub use classes::{BadSelector, ClassSelector};
pub use set::{ClassBook, CodebookSet, Provenance};
pub mod select;
pub mod measure;
pub mod train;
pub use train::{Rule, Trainer};
mod bitstream;
mod crc;
pub mod decode;
pub mod device;
pub mod encode;
pub mod family;
pub mod members;
pub mod suggest;
pub use family::{Family, FamilyEncodeError, FamilyError};
pub use members::FamilyOptions;
pub mod frame;
pub use decode::{decode, decode_into, decode_three_stage_into};
pub use encode::{cpu_lanes, encode, encode_into, encode_three_stage, EncodeError, EncodeOptions, EIGHT_LANES_MIN_BYTES};
pub use frame::{max_frame_len, DecodeError, FrameInfo};
