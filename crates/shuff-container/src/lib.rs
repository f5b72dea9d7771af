//! # shuff-container — the `.shuff` file format
//!
//! One container for everything shuff writes to disk: whole safetensors files compressed with a
//! codebook set carried inside (`shuff compress`, `shuff.save_file`) or named from outside
//! (`shuff encode`, like a message in a collective). Specified byte by byte in docs/FORMAT.md,
//! "Container files".
//!
//! ```text
//! preamble │ [set] │ safetensors header │ segment │ segment │ … │ index │ trailer
//! ```
//!
//! Every segment carries its own header (kind, CRC-32 of what it restores to, stored and restored
//! lengths), so the file can be read front to back as a stream; the index at the end repeats
//! them with their offsets, so one tensor can be read without touching the others. A reader:
//!
//! - checks every length against the bytes actually present before it allocates or reads (the
//!   index must fill exactly the bytes before the trailer, segments must tile the bytes before the
//!   index, a segment restores to at most [`format::MAX_SEGMENT_BYTES`] and a frame to at most 8×
//!   its size), with checked arithmetic on every size it read;
//! - checks each segment's CRC-32 and, by combining them in order, the whole restored file's, so
//!   dropped, repeated, reordered or altered segments are errors;
//! - never holds more than a batch of segments in memory: restoring any file takes memory bounded
//!   by the format's constants, not by the file.
//!
//! Writers cut tensors into segments of at most [`SEGMENT_BYTES`] and stream them out; see
//! [`compress`]. Files go through [`output::AtomicFile`] (unpredictable temporary name in the
//! destination directory, fsync, rename; removed on failure).

#![warn(missing_docs)]

pub mod format;
pub mod output;
pub mod reader;
pub mod source;
pub mod tensors;
pub mod writer;

pub use output::AtomicFile;
pub use reader::Container;
pub use source::Source;
pub use tensors::{compress, Coding, Compressed, TensorEntry};
pub use writer::ContainerWriter;

/// Bytes of data per segment that writers produce (tensors larger than this span several). Large
/// enough that per-segment costs vanish and that a frame's chunks keep every core busy; small
/// enough that a batch of them fits in a few hundred MB.
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// Segments are read, coded and written in batches of about this many data bytes: the unit of
/// parallel work and of memory.
pub const BATCH_BYTES: u64 = 32 << 20;

/// What is wrong with a container file, or with writing one.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Not a container at all.
    #[error("not a shuff container file (no `SHUFFILE` magic)")]
    NotAContainer,
    /// A container of a version (or with flags) this reader does not know.
    #[error("unsupported file version: {0}")]
    Version(String),
    /// The file ends before something it declares.
    #[error("truncated file: {0}")]
    Truncated(String),
    /// The index or trailer contradicts itself or the file.
    #[error("damaged index: {0}")]
    BadIndex(String),
    /// One segment is malformed, damaged or inconsistent with the index.
    #[error("segment {segment}: {what}")]
    BadSegment {
        /// Segment number, from 0.
        segment: u64,
        /// What is wrong.
        what: String,
    },
    /// The restored bytes do not match a checksum.
    #[error("checksum mismatch: {0}")]
    Checksum(String),
    /// The stored safetensors header is not valid, or disagrees with the data.
    #[error("safetensors header: {0}")]
    Safetensors(String),
    /// A frame needs a codebook the reader does not have.
    #[error("{0}")]
    MissingCodebook(String),
    /// A tensor that is not in the file.
    #[error("no tensor named `{0}` in the file")]
    NoSuchTensor(String),
    /// The codebook set is unusable (damaged, or ambiguous for this file).
    #[error("codebook set: {0}")]
    Codebook(String),
    /// A tensor could not be coded.
    #[error("tensor `{tensor}`: {reason}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The error (not a `source`: it is part of the message already).
        error: std::io::Error,
    },
}

impl ContainerError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
        let what = what.into();
        move |error| ContainerError::Io { what, error }
    }
}
