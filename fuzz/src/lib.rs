//! Codebooks the fuzz targets decode with, trained once from the committed real sample so that
//! the fuzzer meets the codes shuff really uses: bf16 `bytes` (max length 12, one lookup a
//! symbol) and bf16 `exponent` (max length 16, long codes on the slow path).

use shuff::stats::stream_histograms;
use shuff::{Codebook, DType, Layout};
use std::sync::OnceLock;

/// Real bf16 activations from the committed sample (~150 KB).
pub fn sample() -> &'static [u8] {
    static SAMPLE: OnceLock<Vec<u8>> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/minilm-sample/step000.safetensors");
        let bytes = std::fs::read(path).expect("committed sample");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid sample");
        let mut names: Vec<String> = st.names().into_iter().filter(|n| n.contains("ffn1_act.x")).cloned().collect();
        names.sort();
        names.iter().flat_map(|n| st.tensor(n).unwrap().data().to_vec()).collect()
    })
}

/// The codebooks: index 0 = bf16 bytes, 1 = bf16 exponent.
pub fn books() -> &'static [Codebook; 2] {
    static BOOKS: OnceLock<[Codebook; 2]> = OnceLock::new();
    BOOKS.get_or_init(|| {
        [Layout::Bytes, Layout::Exponent].map(|layout| {
            let dists: Vec<_> = stream_histograms(DType::Bf16, layout, sample())
                .expect("whole elements")
                .iter()
                .map(|h| h.distribution().expect("non-empty"))
                .collect();
            Codebook::from_distributions(DType::Bf16, layout, &dists, layout.default_max_len()).expect("valid code")
        })
    })
}

/// A family of the largest size a frame can name (16): the exponent codebook and its shifts by
/// −7…+8 exponent steps, so that frames may name every member index.
pub fn family() -> &'static shuff::Family {
    static FAMILY: OnceLock<shuff::Family> = OnceLock::new();
    FAMILY.get_or_init(|| {
        let steps: Vec<i32> = (-7..=8).filter(|&s| s != 0).collect();
        shuff::Family::exponent_shift(std::sync::Arc::new(books()[1].clone()), &steps)
    })
}
