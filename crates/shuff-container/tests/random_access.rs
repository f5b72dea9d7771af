//! Reading one tensor touches only its own segments (plus the file's preamble, index, codebook set
//! and safetensors header): counted by recording every byte range the reader asks for.

use shuff_container::source::{Concat, Source};
use shuff_container::tensors::build_header;
use shuff_container::{compress, Coding, Container};
use std::sync::Mutex;

struct Recording<'a> {
    bytes: &'a [u8],
    reads: Mutex<Vec<(u64, u64)>>,
}

impl Source for Recording<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.reads.lock().unwrap().push((offset, offset + buf.len() as u64));
        self.bytes.read_exact_at(buf, offset)
    }
}

#[test]
fn one_tensor_reads_only_its_segments() {
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/minilm-sample/step004.safetensors")).unwrap();
    let packed = compress(&file[..], Coding::Trained { name: "t", families: true }, Vec::new(), &|_| ()).unwrap().0;
    let src = Recording { bytes: &packed, reads: Mutex::new(Vec::new()) };
    let c = Container::open(&src).unwrap();
    let opened: u64 = src.reads.lock().unwrap().drain(..).map(|(a, b)| b - a).sum();
    // Opening reads the metadata only: far less than the data.
    assert!(opened < packed.len() as u64 / 10, "open read {opened} of {} bytes", packed.len());
    let st = safetensors::SafeTensors::deserialize(&file).unwrap();
    for t in c.tensors().iter().filter(|t| !t.is_empty()) {
        let (_, bytes) = c.tensor(&t.name).unwrap();
        assert_eq!(bytes, st.tensor(&t.name).unwrap().data());
        let reads: Vec<(u64, u64)> = src.reads.lock().unwrap().drain(..).collect();
        // Exactly the segments whose restored bytes lie in this tensor.
        let own: Vec<(u64, u64)> = c
            .segments()
            .iter()
            .filter(|s| s.header.kind.restores() && s.restored_start >= t.start && s.restored_start < t.end)
            .map(|s| (s.offset, s.offset + 24 + s.header.stored_len))
            .collect();
        assert!(!own.is_empty());
        assert_eq!(reads, own, "{}", t.name);
    }
}

#[test]
fn tensors_in_memory_compress_without_being_copied_into_one_file() {
    let a: Vec<u8> = (0..100_000u32).flat_map(|i| ((i % 97) as u16 + 0x3e00).to_le_bytes()).collect();
    let b: Vec<u8> = (0..5_000u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let header = build_header(&[("a", "BF16", &[100_000], a.len() as u64), ("b", "F32", &[50, 100], b.len() as u64)], None).unwrap();
    let whole: Vec<u8> = [&header[..], &a, &b].concat();
    safetensors::SafeTensors::deserialize(&whole).expect("a header safetensors reads");
    let parts = Concat::new(vec![&header, &a, &[], &b]);
    let from_parts = compress(&parts, Coding::Trained { name: "t", families: true }, Vec::new(), &|_| ()).unwrap().0;
    let from_whole = compress(&whole[..], Coding::Trained { name: "t", families: true }, Vec::new(), &|_| ()).unwrap().0;
    assert_eq!(from_parts, from_whole);
    assert!(build_header(&[("a", "BF16", &[3], 8)], None).is_err(), "shape and length disagree");
    assert!(build_header(&[("a", "U8", &[1], 1), ("a", "U8", &[1], 1)], None).is_err(), "a name twice");
}

/// Batches of different sizes (a 24 MiB batch, a 30 MiB one, a 3 MiB one) restore exactly: the
/// reader's buffers only grow, and each batch writes only its own bytes.
#[test]
fn a_file_whose_batches_differ_in_size_restores_exactly() {
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/minilm-sample/step004.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&sample).unwrap();
    let real: Vec<u8> = st.tensors().into_iter().filter(|(_, t)| t.dtype() == safetensors::Dtype::BF16).flat_map(|(_, t)| t.data().to_vec()).collect();
    let mib = |n: usize| -> Vec<u8> { real.iter().copied().cycle().take(n << 20).collect() };
    let (a, b, c, d) = (mib(20), mib(4), mib(30), mib(3));
    let shapes: Vec<[usize; 1]> = [&a, &b, &c, &d].iter().map(|t| [Vec::len(t) / 2]).collect();
    let described: Vec<(&str, &str, &[usize], u64)> =
        ["a", "b", "c", "d"].iter().zip(&shapes).map(|(n, s)| (*n, "BF16", &s[..], 2 * s[0] as u64)).collect();
    let header = build_header(&described, None).unwrap();
    let file: Vec<u8> = [&header[..], &a, &b, &c, &d].concat();
    let packed = compress(&file[..], Coding::Trained { name: "t", families: false }, Vec::new(), &|_| ()).unwrap().0;
    let restored = Container::open(&packed[..]).unwrap().restore_to(Vec::new(), &|_| ()).unwrap();
    assert!(restored == file, "restored {} bytes of {}", restored.len(), file.len());
}
