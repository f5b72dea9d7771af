//! Containers under attack: every damaged, truncated, rearranged or lying file is a typed error,
//! never a panic, a huge allocation or a wrong file. Built on real tensors from the repository.

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use shuff_container::format::{SegmentHeader, SegmentKind, Trailer, INDEX_MAGIC, PREAMBLE_BYTES, SEGMENT_HEADER_BYTES, TRAILER_BYTES};
use shuff_container::{compress, Coding, Container, ContainerError};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn whisper() -> Vec<u8> {
    std::fs::read(repo().join("tests/data/whisper-sample.safetensors")).unwrap()
}

fn pack(file: &[u8]) -> Vec<u8> {
    compress(file, Coding::Trained { name: "t", families: true }, Vec::new(), &|_| ()).unwrap().0
}

fn restore(packed: &[u8]) -> Result<Vec<u8>, ContainerError> {
    Container::open(packed)?.restore_to(Vec::new(), &|_| ())
}

#[test]
fn real_files_round_trip_and_one_tensor_reads_alone() {
    for path in ["tests/data/whisper-sample.safetensors", "tests/data/minilm-sample/step004.safetensors"] {
        let file = std::fs::read(repo().join(path)).unwrap();
        let packed = pack(&file);
        assert!(packed.len() < file.len() * 9 / 10, "{path}: {} → {}", file.len(), packed.len());
        assert!(restore(&packed).unwrap() == file, "{path}");
        let c = Container::open(&packed[..]).unwrap();
        let st = safetensors::SafeTensors::deserialize(&file).unwrap();
        for t in c.tensors() {
            let (_, bytes) = c.tensor(&t.name).unwrap();
            assert_eq!(bytes, st.tensor(&t.name).unwrap().data(), "{path}: {}", t.name);
        }
        assert!(matches!(c.tensor("no such"), Err(ContainerError::NoSuchTensor(_))));
    }
}

#[test]
fn every_truncation_and_every_bit_flip_is_an_error() {
    let file = whisper();
    let packed = pack(&file);
    let step = (packed.len() / 1500).max(1);
    for cut in (0..packed.len()).step_by(step) {
        assert!(restore(&packed[..cut]).is_err(), "cut at {cut}");
    }
    let mut bad = packed.clone();
    for pos in (0..packed.len()).step_by(step).chain(packed.len() - 64..packed.len()) {
        for bit in [0x01, 0x80] {
            bad[pos] ^= bit;
            assert!(restore(&bad).is_err(), "flip {bit:#x} at {pos} of {}", packed.len());
            bad[pos] ^= bit;
        }
    }
}

/// The file's segments (header + stored bytes) and what surrounds them.
fn split(packed: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>, Trailer) {
    let c = Container::open(packed).unwrap();
    let segs = c
        .segments()
        .iter()
        .map(|s| packed[s.offset as usize..(s.offset + SEGMENT_HEADER_BYTES + s.header.stored_len) as usize].to_vec())
        .collect();
    let mut tb = [0u8; TRAILER_BYTES as usize];
    tb.copy_from_slice(&packed[packed.len() - TRAILER_BYTES as usize..]);
    (packed[..PREAMBLE_BYTES as usize].to_vec(), segs, Trailer::parse(&tb, packed.len() as u64).unwrap())
}

/// Reassembles a file from segments with a consistent index (as a careful forger would), keeping
/// the original trailer's checksum of the restored file.
fn assemble(preamble: &[u8], segs: &[Vec<u8>], trailer: Trailer) -> Vec<u8> {
    let mut out = preamble.to_vec();
    let mut index = INDEX_MAGIC.to_vec();
    for s in segs {
        index.extend_from_slice(&(out.len() as u64).to_le_bytes());
        index.extend_from_slice(&s[..SEGMENT_HEADER_BYTES as usize]);
        out.extend_from_slice(s);
    }
    let t = Trailer { index_offset: out.len() as u64, segments: segs.len() as u64, index_crc: crc32fast::hash(&index), ..trailer };
    out.extend_from_slice(&index);
    out.extend_from_slice(&t.to_bytes());
    out
}

#[test]
fn dropped_repeated_swapped_or_relabelled_segments_are_detected() {
    let file = std::fs::read(repo().join("tests/data/minilm-sample/step004.safetensors")).unwrap();
    let packed = pack(&file);
    let (pre, segs, trailer) = split(&packed);
    assert!(restore(&assemble(&pre, &segs, trailer)).unwrap() == file, "reassembly itself is faithful");
    let data = 2..segs.len(); // after the set and the safetensors header
    assert!(data.len() > 4);
    let mid = data.start + data.len() / 2;
    let mut variants: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    let mut v = segs.clone();
    v.remove(mid);
    variants.push(("dropped", v));
    let mut v = segs.clone();
    v.insert(mid, segs[mid].clone());
    variants.push(("repeated", v));
    // Swap two segments of the same restored length, so every length still adds up.
    let len_of = |s: &Vec<u8>| SegmentHeader::parse(s[..24].try_into().unwrap(), 0).unwrap().restored_len;
    let (a, b) = data
        .clone()
        .flat_map(|a| data.clone().map(move |b| (a, b)))
        .find(|&(a, b)| a < b && len_of(&segs[a]) == len_of(&segs[b]) && segs[a] != segs[b])
        .expect("two data segments of equal length");
    let mut v = segs.clone();
    v.swap(a, b);
    variants.push(("swapped", v));
    // A raw segment relabelled as a frame, and a frame as raw.
    for kind in [0u8, 1] {
        if let Some(i) = data.clone().find(|&i| segs[i][0] != kind) {
            let mut v = segs.clone();
            v[i][0] = kind;
            variants.push(("relabelled", v));
        }
    }
    for (what, v) in variants {
        let e = restore(&assemble(&pre, &v, trailer));
        assert!(e.is_err(), "{what} segments were not detected");
    }
}

#[test]
fn lying_sizes_are_rejected_before_anything_is_allocated() {
    let packed = pack(&whisper());
    let (pre, segs, trailer) = split(&packed);
    // A data segment that claims to restore to 2^40 and 2^62 bytes, or to be 2^63 bytes long.
    for (field, value) in [(16, 1u64 << 40), (16, 1 << 62), (8, 1 << 63), (8, u64::MAX)] {
        let mut v = segs.clone();
        v[3][field..field + 8].copy_from_slice(&value.to_le_bytes());
        let e = restore(&assemble(&pre, &v, trailer)).unwrap_err();
        assert!(matches!(e, ContainerError::BadSegment { .. } | ContainerError::BadIndex(_)), "{e}");
    }
    // A trailer that puts a huge index far away, or claims 2^61 segments.
    for t in [Trailer { segments: 1 << 61, ..trailer }, Trailer { index_offset: u64::MAX - 10, ..trailer }] {
        let mut bad = packed.clone();
        let n = bad.len();
        bad[n - TRAILER_BYTES as usize..].copy_from_slice(&t.to_bytes());
        assert!(matches!(restore(&bad).unwrap_err(), ContainerError::BadIndex(_)));
    }
    // A 278-byte file of claims.
    let tiny = assemble(&pre, &[segs[1][..24].to_vec()], trailer);
    assert!(restore(&tiny).is_err());
    // Old formats name their version.
    let e = restore(b"SHUFFMD1\0\0\0\0\0\0\0\0more bytes").unwrap_err();
    assert!(matches!(e, ContainerError::Version(_)), "{e}");
    assert!(matches!(restore(b"PK\x03\x04 a zip file, not ours").unwrap_err(), ContainerError::NotAContainer));
}

fn safetensors_file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, &None).unwrap()
}

#[test]
fn zero_size_tensors_anywhere_round_trip() {
    let bf16: Vec<u8> = (0..4096u32).flat_map(|i| ((i % 61) as u16 + 0x3f00).to_le_bytes()).collect();
    // Every order of names, so hash-map order cannot hide a failure.
    for names in [["a", "b", "c", "d"], ["d", "c", "b", "a"], ["b", "d", "a", "c"]] {
        let file = safetensors_file(&[
            (names[0], Dtype::BF16, vec![0], vec![]),
            (names[1], Dtype::BF16, vec![4096], bf16.clone()),
            (names[2], Dtype::F32, vec![0, 7], vec![]),
            (names[3], Dtype::BF16, vec![4096], bf16.clone()),
        ]);
        for _ in 0..5 {
            let packed = pack(&file);
            assert!(restore(&packed).unwrap() == file);
            let c = Container::open(&packed[..]).unwrap();
            assert_eq!(c.tensor(names[2]).unwrap().1, Vec::<u8>::new());
        }
    }
}

#[test]
fn safetensors_headers_that_lie_are_rejected() {
    let header = |json: &str| {
        let mut f = (json.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(json.as_bytes());
        f
    };
    let cases = [
        // Two 2^63-byte tensors: their sum wraps a u64.
        r#"{"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,9223372036854775808]},"b":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[9223372036854775808,0]}}"#,
        // A shape whose product overflows.
        r#"{"a":{"dtype":"BF16","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#,
        // Data the file does not have.
        r#"{"a":{"dtype":"BF16","shape":[1099511627776],"data_offsets":[0,2199023255552]}}"#,
        // Overlap.
        r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
    ];
    for json in cases {
        let mut file = header(json);
        file.extend_from_slice(&[0u8; 64]);
        let e = compress(&file, Coding::Trained { name: "t", families: true }, Vec::new(), &|_| ()).unwrap_err();
        assert!(matches!(e, ContainerError::Safetensors(_)), "{json}: {e}");
    }
    // A header length beyond the file.
    let mut file = (1u64 << 40).to_le_bytes().to_vec();
    file.extend_from_slice(b"{}");
    assert!(matches!(compress(&file, Coding::Trained { name: "t", families: true }, Vec::new(), &|_| ()).unwrap_err(), ContainerError::Safetensors(_)));
}

#[test]
fn long_names_round_trip_whole() {
    let data: Vec<u8> = (0..300_000u32).flat_map(|i| ((i % 31) as u16 + 0x3c00).to_le_bytes()).collect();
    let other: Vec<u8> = (0..300_000u32).flat_map(|i| ((i % 7) as u16 + 0x3c00).to_le_bytes()).collect();
    let long = format!("{}.weight", "ü".repeat(40_000)); // 80 KB name: more than a u16 length holds
    // Identical data in two classes gives two identical codebooks: one fingerprint, no ambiguity.
    let file = safetensors_file(&[
        (&long, Dtype::BF16, vec![300_000], data.clone()),
        ("x", Dtype::BF16, vec![300_000], data),
        ("y", Dtype::BF16, vec![300_000], other),
    ]);
    let packed = pack(&file);
    assert!(restore(&packed).unwrap() == file);
    let c = Container::open(&packed[..]).unwrap();
    assert!(c.tensors().iter().any(|t| t.name == long));
    assert!(c.embedded_codebooks().unwrap().class_names().any(|n| n.contains(&"ü".repeat(40_000))));
}

#[test]
fn a_file_coded_with_a_named_set_needs_that_set() {
    let file = whisper();
    let trained = Container::open(&pack(&file)[..]).unwrap().embedded_codebooks().unwrap().clone();
    let (class, _) = trained.classes().max_by_key(|(_, c)| c.provenance.symbols).unwrap();
    let coded = compress(&file[..], Coding::Class { set: &trained, class, filter: None }, Vec::new(), &|_| ()).unwrap().0;
    let c = Container::open(&coded[..]).unwrap();
    assert!(!c.embeds_codebooks());
    assert!(matches!(c.restore_to(Vec::new(), &|_| ()).unwrap_err(), ContainerError::MissingCodebook(_)));
    let c = Container::open(&coded[..]).unwrap().with_codebooks(&trained);
    assert!(c.restore_to(Vec::new(), &|_| ()).unwrap() == file);
    assert_eq!(c.segments()[0].header.kind, SegmentKind::SafetensorsHeader);
}

#[test]
fn constant_tensors_round_trip_as_tiny_frames() {
    let zeros = vec![0u8; 3 << 20];
    let ramp: Vec<u8> = (0..(1u32 << 20)).flat_map(|i| ((i % 61) as u16 + 0x3f00).to_le_bytes()).collect();
    let file = safetensors_file(&[("mask", Dtype::BF16, vec![3 << 19], zeros), ("w", Dtype::BF16, vec![1 << 20], ramp)]);
    let packed = pack(&file);
    assert!(restore(&packed).unwrap() == file);
    assert!(packed.len() < file.len() / 2);
}

/// A file that cannot be read past `fail_at` (one truncated, or a disk error, while compressing).
struct FailingSource {
    bytes: Vec<u8>,
    fail_at: u64,
}

impl shuff_container::Source for FailingSource {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        if offset + buf.len() as u64 > self.fail_at {
            return Err(std::io::Error::other("injected read failure"));
        }
        self.bytes[..].read_exact_at(buf, offset)
    }
}

/// An output that fails after `room` bytes (a full disk).
struct FullDisk {
    room: usize,
}

impl std::io::Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.room {
            return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "injected full disk"));
        }
        self.room -= buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compression reads and codes a batch while a writer thread writes the one before: a failure on
/// either side ends the other and is the error reported (no hang, no panic), in the first batch,
/// a middle one or the last.
#[test]
fn read_and_write_failures_while_compressing_are_io_errors() {
    // Real bf16 tensors tiled to six 12 MiB tensors: three batches (`BATCH_BYTES`).
    let sample = std::fs::read(repo().join("tests/data/minilm-sample/step004.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&sample).unwrap();
    let real: Vec<u8> = st.tensors().into_iter().filter(|(_, t)| t.dtype() == Dtype::BF16).flat_map(|(_, t)| t.data().to_vec()).collect();
    let tiled: Vec<u8> = real.iter().copied().cycle().take(12 << 20).collect();
    let names = ["t0", "t1", "t2", "t3", "t4", "t5"];
    let file = safetensors_file(&names.map(|n| (n, Dtype::BF16, vec![6 << 20], tiled.clone())));
    let set = Container::open(&pack(&sample)[..]).unwrap().embedded_codebooks().unwrap().clone();
    let len = file.len() as u64;
    for fail_at in [len / 10, len / 2, len - 1] {
        let source = FailingSource { bytes: file.clone(), fail_at };
        // With a set, the only reads are the header's and the batches'.
        match compress(&source, Coding::Set(&set), Vec::new(), &|_| ()) {
            Err(ContainerError::Io { what, error }) => {
                assert!(what.starts_with("reading bytes"), "{what}");
                assert!(error.to_string().contains("injected"), "{error}");
            }
            other => panic!("read failure at {fail_at}: {:?}", other.map(|(_, c)| c.output_bytes)),
        }
    }
    let whole = compress(&file[..], Coding::Set(&set), Vec::new(), &|_| ()).unwrap().0;
    for room in [0, whole.len() / 10, whole.len() / 2, whole.len() - 1] {
        match compress(&file[..], Coding::Set(&set), FullDisk { room }, &|_| ()) {
            Err(ContainerError::Io { error, .. }) => assert_eq!(error.kind(), std::io::ErrorKind::StorageFull, "{error}"),
            other => panic!("full disk after {room} bytes: {:?}", other.map(|(_, c)| c.output_bytes)),
        }
    }
}
