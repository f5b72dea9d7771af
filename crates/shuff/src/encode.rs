//! The single-stage encoder: a table lookup and a bit write per symbol, nothing else.
//!
//! A message is cut into chunks of [`CHUNK_BYTES`] tensor bytes; each stream of a chunk is coded
//! as independent lanes (four by default, so the CPU overlaps four dependency chains; a GPU wants
//! more: the count is [`EncodeOptions::lanes`] and travels in the frame), stored raw when coding
//! does not pay, or as one byte when constant. Chunks are independent and, for large messages,
//! coded in parallel.

use crate::bitstream::write::{encode_lanes, lane_capacity};
use crate::codebook::{partial_stream_code, Codebook, StreamCode};
use crate::crc;
use crate::frame::{max_frame_len, FrameInfo, StreamMode, CHUNK_BYTES, LANES, MAX_LANES, MAX_STREAMS, VERSION};
use crate::huffman;
use crate::layout::{self, MisalignedTensor};
use crate::stats::stream_histograms;
use crate::{DType, Layout};
use std::cell::RefCell;

/// Encoder settings.
#[derive(Clone, Copy, Debug)]
pub struct EncodeOptions {
    /// Store a CRC-32 of the tensor bytes in the header (taken chunk by chunk as they are coded,
    /// while each chunk is in cache: see `crc.rs`).
    pub checksum: bool,
    /// Code the chunks of large messages on rayon's thread pool.
    pub parallel: bool,
    /// Lanes per coded stream per chunk (1 to [`MAX_LANES`]), the frame's lane geometry; `None`:
    /// the CPU decoder's choice, [`cpu_lanes`]. GPU decoders want more independent lanes (each
    /// costs 2 bytes of lane size per coded stream and chunk). Every decoder reads every lane
    /// count.
    pub lanes: Option<usize>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { checksum: false, parallel: true, lanes: None }
    }
}

/// Messages from this size on get eight lanes where [`cpu_lanes`] gives them (below, the
/// eight-lane loop measured no faster and the extra lane sizes cost ~0.8% of a 4 KiB frame).
pub const EIGHT_LANES_MIN_BYTES: usize = 16 * 1024;

/// The lane count for CPU decoders of `len` bytes coded with `codes`: eight when a coded stream
/// decodes one symbol a lookup with every code in the primary table (the CPU decoder then runs
/// eight lanes in lockstep: `exponent` mantissas 1.49 → 1.83 GB/s at 64 KiB on one EPYC core) and
/// the message has at least [`EIGHT_LANES_MIN_BYTES`], else four ([`LANES`]: the other kernels
/// run four lanes at a time, and eight decoded 1–2% slower there). A property of the codes, not of
/// the machine, so every encoder writes the same frame.
pub fn cpu_lanes(codes: &[&StreamCode], len: usize) -> usize {
    let eight = len >= EIGHT_LANES_MIN_BYTES && codes.iter().any(|c| !c.is_flat() && c.has_eight_lane_loop());
    if eight {
        2 * LANES
    } else {
        LANES
    }
}

/// The lane count `opts` asks for, checked, or the CPU's choice for `codes` (see [`cpu_lanes`]).
fn lanes_for(opts: EncodeOptions, codes: &[&StreamCode], len: usize) -> Result<usize, EncodeError> {
    match opts.lanes {
        None => Ok(cpu_lanes(codes, len)),
        Some(lanes) if (1..=MAX_LANES).contains(&lanes) => Ok(lanes),
        Some(lanes) => Err(EncodeError::BadLaneCount(lanes)),
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The tensor's bytes are not whole elements.
    #[error(transparent)]
    Misaligned(#[from] MisalignedTensor),
    /// A lane count outside 1..=[`MAX_LANES`].
    #[error("{0} lanes per stream: a frame holds 1 to {MAX_LANES}")]
    BadLaneCount(usize),
    /// The output buffer is smaller than [`max_frame_len`].
    #[error("output buffer of {given} bytes is smaller than the worst-case frame of {needed} bytes")]
    OutputTooSmall {
        /// Bytes needed ([`max_frame_len`]).
        needed: usize,
        /// Bytes given.
        given: usize,
    },
}

/// Per-thread buffers, so that steady-state encoding allocates nothing.
#[derive(Default)]
pub(crate) struct Scratch {
    /// A chunk in symbol order (layouts with several streams).
    pub(crate) symbols: Vec<u8>,
    /// Worst-case room for four lanes.
    lanes: Vec<u8>,
}

thread_local! {
    pub(crate) static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    /// Worst-case room for every chunk of a message coded in parallel (on the calling thread).
    #[cfg(feature = "parallel")]
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The first `len` bytes of a reused scratch buffer that only ever grows: resizing it down for a
/// message's short last chunk and up again for the next message's first zero-filled the difference.
pub(crate) fn grown(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
}

/// Encodes one chunk of tensor bytes into `out` (which has room for the worst case); returns the
/// bytes written.
fn encode_chunk(codes: &[&StreamCode], dtype: DType, layout: Layout, lanes: usize, chunk: &[u8], out: &mut [u8], scratch: &mut Scratch) -> usize {
    let k = codes.len();
    let n = chunk.len() / k;
    // The streams before the first with a real code are stored raw (or constant): the transform
    // writes them straight to their place after the mode byte, where a raw stream stays (a copy
    // from scratch was 4% of compressing a checkpoint, whose mantissas are raw); the others go to
    // scratch, stream `s` at `s · n`.
    let direct = if k == 1 { 0 } else { codes.iter().take_while(|c| c.is_flat()).count() };
    let symbols: &[u8] = if k == 1 {
        chunk
    } else {
        let symbols = grown(&mut scratch.symbols, chunk.len());
        let mut streams: [&mut [u8]; MAX_STREAMS] = Default::default();
        let (mut in_out, mut in_scratch) = (&mut out[1..1 + direct * n], &mut symbols[direct * n..]);
        for stream in &mut streams[..k] {
            let from = if in_out.is_empty() { &mut in_scratch } else { &mut in_out };
            let (this, rest) = std::mem::take(from).split_at_mut(n);
            *stream = this;
            *from = rest;
        }
        layout::to_streams(dtype, layout, chunk, &mut streams[..k]);
        symbols
    };
    // The last lane is the longest: n / lanes + the remainder (< lanes).
    let cap = lane_capacity(n / lanes + lanes);
    if scratch.lanes.len() < lanes * cap {
        scratch.lanes.resize(lanes * cap, 0);
    }
    let (mut sizes, mut staged) = ([0usize; MAX_LANES], [false; MAX_LANES]);
    let (sizes, staged) = (&mut sizes[..lanes], &mut staged[..lanes]);
    let mut modes = 0u8;
    let mut pos = 1;
    for (s, code) in codes.iter().enumerate() {
        if s < direct {
            // Already in the chunk, at the place it has if every stream before it is raw.
            let at = 1 + s * n;
            let mode = if out[at..at + n].iter().all(|&b| b == out[at]) {
                out[pos] = out[at];
                pos += 1;
                StreamMode::Constant
            } else {
                if pos != at {
                    out.copy_within(at..at + n, pos);
                }
                pos += n;
                StreamMode::Raw
            };
            modes |= (mode as u8) << (2 * s);
            continue;
        }
        let syms = &symbols[s * n..(s + 1) * n];
        let mode = if syms.iter().all(|&b| b == syms[0]) {
            out[pos] = syms[0];
            pos += 1;
            StreamMode::Constant
        } else if code.is_flat() || 2 * lanes >= n {
            // Coding cannot be smaller: every symbol has 8 bits, or the lane sizes alone fill n.
            out[pos..pos + n].copy_from_slice(syms);
            pos += n;
            StreamMode::Raw
        } else {
            // Lanes go after the lane sizes (which fit: 2 · lanes < n, and the stream has room for
            // n bytes raw).
            let lanes_at = pos + 2 * lanes;
            encode_lanes(code, syms, &mut out[lanes_at..], &mut scratch.lanes, cap, sizes, staged);
            let total: usize = sizes.iter().sum::<usize>() + 2 * lanes;
            if total < n {
                for &size in sizes.iter() {
                    out[pos..pos + 2].copy_from_slice(&(size as u16).to_le_bytes());
                    pos += 2;
                }
                for l in 0..lanes {
                    if staged[l] {
                        out[pos..pos + sizes[l]].copy_from_slice(&scratch.lanes[l * cap..l * cap + sizes[l]]);
                    }
                    pos += sizes[l];
                }
                StreamMode::Coded
            } else {
                out[pos..pos + n].copy_from_slice(syms);
                pos += n;
                StreamMode::Raw
            }
        };
        modes |= (mode as u8) << (2 * s);
    }
    out[0] = modes;
    pos
}

/// Bytes of a staging slot for one chunk of `len` tensor bytes: the worst case of the chunk (each
/// stream at most raw, plus the mode byte) and half as much again, so that compressible data has
/// room to code every lane in place instead of through scratch (which cost two threads 10%).
#[cfg(feature = "parallel")]
fn staging_capacity(len: usize) -> usize {
    len + 1 + len / 2 + 64
}

fn check_out(dtype: DType, layout: Layout, data: &[u8], out: &[u8]) -> Result<(), EncodeError> {
    layout::element_count(dtype, data.len())?;
    let needed = max_frame_len(dtype, layout, data.len());
    if out.len() < needed {
        return Err(EncodeError::OutputTooSmall { needed, given: out.len() });
    }
    Ok(())
}

/// Messages of at least this many chunks are coded in parallel (smaller ones are done before a
/// thread pool would wake up).
#[cfg(feature = "parallel")]
const PARALLEL_MIN_CHUNKS: usize = 8;

/// Encodes the chunks of `data` into `out` after `pos`, writing a chunk table first when there is
/// more than one chunk. Returns the end position and, when `opts.checksum`, the CRC-32 of `data`
/// (taken chunk by chunk: see [`crate::crc`]).
fn encode_chunks(codes: &[&StreamCode], dtype: DType, layout: Layout, data: &[u8], out: &mut [u8], mut pos: usize, lanes: usize, opts: EncodeOptions) -> (usize, u32) {
    let count = data.len().div_ceil(CHUNK_BYTES);
    if count <= 1 {
        return SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            match count {
                1 => (pos + encode_chunk(codes, dtype, layout, lanes, data, &mut out[pos..], &mut s), crc::of_chunk(data, opts.checksum)),
                _ => (pos, 0),
            }
        });
    }
    let table = pos;
    pos += 4 * count;
    #[cfg(feature = "parallel")]
    if opts.parallel && count >= PARALLEL_MIN_CHUNKS && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        // One run of consecutive chunks per thread. The first run is coded straight into `out`,
        // where it belongs; the others into worst-case room in a staging buffer, back to back, and
        // copied to their places (known once the runs before them are done) in parallel. Staging
        // every chunk made two threads 1.57× one on 16 MiB, the copy 16% of their time; coding
        // into slots of `out` itself and closing the gaps afterwards made that copy serial; a
        // fresh buffer per chunk cost more in allocation than the threads gained.
        let chunks: Vec<&[u8]> = data.chunks(CHUNK_BYTES).collect();
        let runs: Vec<&[&[u8]]> = chunks.chunks(count.div_ceil(rayon::current_num_threads())).collect();
        return STAGING.with(|staging| {
            let mut staging = staging.borrow_mut();
            let room = |run: &[&[u8]]| run.iter().map(|c| staging_capacity(c.len())).sum::<usize>();
            let total: usize = runs[1..].iter().map(|r| room(r)).sum();
            if staging.len() < total {
                staging.resize(total, 0);
            }
            let (head, rest) = out.split_at_mut(pos);
            let mut bufs: Vec<&mut [u8]> = Vec::with_capacity(runs.len());
            bufs.push(rest);
            let mut free = &mut staging[..total];
            for run in &runs[1..] {
                let (buf, tail) = free.split_at_mut(room(run));
                bufs.push(buf);
                free = tail;
            }
            // Each chunk's coded size and CRC-32.
            let sizes: Vec<Vec<(usize, u32)>> = bufs
                .par_iter_mut()
                .zip(runs.par_iter())
                .map(|(buf, run)| {
                    SCRATCH.with(|s| {
                        let mut s = s.borrow_mut();
                        let mut at = 0;
                        run.iter().map(|c| {
                            let size = encode_chunk(codes, dtype, layout, lanes, c, &mut buf[at..], &mut s);
                            at += size;
                            (size, crc::of_chunk(c, opts.checksum))
                        }).collect()
                    })
                })
                .collect();
            let run_len = |r: usize| sizes[r].iter().map(|&(size, _)| size).sum::<usize>();
            // Pieces of the staged runs and where they go, copied in parallel.
            const PIECE: usize = 1 << 20;
            let mut bufs = bufs.into_iter();
            let in_place = bufs.next().expect("run 0 codes into `out`");
            let mut dst = &mut in_place[run_len(0)..];
            let mut pieces: Vec<(&mut [u8], &[u8])> = Vec::new();
            for (r, buf) in bufs.enumerate().map(|(i, b)| (i + 1, b)) {
                let len = run_len(r);
                let (place, tail) = std::mem::take(&mut dst).split_at_mut(len);
                dst = tail;
                pieces.extend(place.chunks_mut(PIECE).zip(buf[..len].chunks(PIECE)));
            }
            pieces.into_par_iter().for_each(|(place, from)| place.copy_from_slice(from));
            let mut entry = table;
            for &(size, _) in sizes.iter().flatten() {
                head[entry..entry + 4].copy_from_slice(&(size as u32).to_le_bytes());
                entry += 4;
                pos += size;
            }
            let crcs: Vec<u32> = sizes.iter().flatten().map(|&(_, crc)| crc).collect();
            (pos, crc::of_chunks(&crcs, data.len()))
        });
    }
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let mut frame_crc = 0;
        for (i, c) in data.chunks(CHUNK_BYTES).enumerate() {
            let size = encode_chunk(codes, dtype, layout, lanes, c, &mut out[pos..], &mut s);
            frame_crc = crc::combine(frame_crc, crc::of_chunk(c, opts.checksum), c.len());
            out[table + 4 * i..table + 4 * i + 4].copy_from_slice(&(size as u32).to_le_bytes());
            pos += size;
        }
        (pos, frame_crc)
    })
}

/// Writes the frame header for `data` at the start of `out` (fingerprint `None` marks a
/// three-stage frame; `checksum`, when `opts.checksum`, the CRC-32 of `data`, known only once the
/// chunks are coded: the header is written again then, at the same length); returns its length.
fn write_header(
    dtype: DType,
    layout: Layout,
    data: &[u8],
    fingerprint: Option<u32>,
    members: [u8; MAX_STREAMS],
    lanes: usize,
    opts: EncodeOptions,
    checksum: u32,
    out: &mut [u8],
) -> usize {
    FrameInfo {
        dtype,
        layout,
        elements: (data.len() / dtype.size()) as u64,
        fingerprint,
        checksum: opts.checksum.then_some(checksum),
        lanes,
        members,
        version: VERSION,
        header_len: 0,
    }
    .write(out)
}

/// Encodes tensor bytes `data` (elements of `book.dtype()`, little-endian) with `book` into `out`,
/// which must hold at least [`max_frame_len`] bytes. Returns the frame's length.
pub fn encode_into(book: &Codebook, data: &[u8], out: &mut [u8], opts: EncodeOptions) -> Result<usize, EncodeError> {
    // A single codebook is a family of one: its own fingerprint, member 0 for every stream.
    encode_members_into(&[book], [0; MAX_STREAMS], book.fingerprint().0 as u32, data, out, opts)
}

/// Each stream's code, gathered without allocating: stream `s` of `books[members[s]]` for the
/// first `k` streams (the entries past them repeat the last and are unused).
pub(crate) fn stream_refs<'a>(books: &[&'a Codebook], members: [u8; MAX_STREAMS], k: usize) -> [&'a StreamCode; MAX_STREAMS] {
    std::array::from_fn(|s| {
        let s = s.min(k - 1);
        &books[usize::from(members[s])].streams()[s]
    })
}

/// Encodes `data` with a codebook family: stream `s` is coded by member `members[s]`, and the frame
/// names the members and the family's fingerprint (see [`crate::family`]). The caller checks that
/// every member index is below the family's size and that all members share a dtype and layout.
pub(crate) fn encode_members_into(
    books: &[&Codebook],
    members: [u8; MAX_STREAMS],
    family_fingerprint: u32,
    data: &[u8],
    out: &mut [u8],
    opts: EncodeOptions,
) -> Result<usize, EncodeError> {
    let first = books[0];
    let (dtype, layout) = (first.dtype(), first.layout());
    check_out(dtype, layout, data, out)?;
    let k = first.streams().len();
    let codes = stream_refs(books, members, k);
    let lanes = lanes_for(opts, &codes[..k], data.len())?;
    let header_len = write_header(dtype, layout, data, Some(family_fingerprint), members, lanes, opts, 0, out);
    let (end, checksum) = encode_chunks(&codes[..k], dtype, layout, data, out, header_len, lanes, opts);
    if opts.checksum {
        write_header(dtype, layout, data, Some(family_fingerprint), members, lanes, opts, checksum, out);
    }
    Ok(end)
}

/// Encodes `data` with `book` into a new buffer.
pub fn encode(book: &Codebook, data: &[u8], opts: EncodeOptions) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![0u8; max_frame_len(book.dtype(), book.layout(), data.len())];
    let n = encode_into(book, data, &mut out, opts)?;
    out.truncate(n);
    Ok(out)
}

/// Maximum code length of the per-message codes of three-stage frames (lengths travel as nibbles).
pub const THREE_STAGE_MAX_LEN: u32 = 15;

/// The three-stage baseline: counts the message, builds each stream's own optimal code and sends its
/// lengths (128 bytes per stream) in the frame. Same engine, same chunks; for comparison and for
/// data without a codebook.
pub fn encode_three_stage(dtype: DType, layout: Layout, data: &[u8], opts: EncodeOptions) -> Result<Vec<u8>, EncodeError> {
    let hists = stream_histograms(dtype, layout, data)?;
    let mut codes = Vec::new();
    let mut lengths_of = Vec::new();
    for h in &hists {
        let lengths = huffman::limited_lengths(&h.counts, THREE_STAGE_MAX_LEN).expect("256 symbols fit 15 bits");
        let lengths: [u8; 256] = lengths.try_into().expect("256 lengths");
        lengths_of.push(lengths);
        codes.push(partial_stream_code(lengths).expect("package-merge gives a valid code"));
    }
    let codes: Vec<&StreamCode> = codes.iter().collect();
    let lanes = lanes_for(opts, &codes, data.len())?;
    let mut out = vec![0u8; max_frame_len(dtype, layout, data.len())];
    let mut pos = write_header(dtype, layout, data, None, [0; MAX_STREAMS], lanes, opts, 0, &mut out);
    for lengths in &lengths_of {
        for pair in lengths.chunks_exact(2) {
            out[pos] = pair[0] | (pair[1] << 4);
            pos += 1;
        }
    }
    let (n, checksum) = encode_chunks(&codes, dtype, layout, data, &mut out, pos, lanes, opts);
    if opts.checksum {
        write_header(dtype, layout, data, None, [0; MAX_STREAMS], lanes, opts, checksum, &mut out);
    }
    out.truncate(n);
    Ok(out)
}

