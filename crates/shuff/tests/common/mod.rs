//! Real tensors from the committed samples, shared by the integration tests.
#![allow(dead_code)]

use shuff::stats::stream_histograms;
use shuff::{Codebook, DType, Layout};
use std::path::Path;

pub fn sample_tensors(step: usize, pattern: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/data/minilm-sample/step{step:03}.safetensors"));
    let bytes = std::fs::read(path).expect("committed sample");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().filter(|n| n.contains(pattern)).cloned().collect();
    names.sort();
    names.iter().map(|n| st.tensor(n).unwrap().data().to_vec()).collect()
}

/// All FFN1 activations of a step concatenated: ~150 KB of real bf16, several chunks.
pub fn real_bf16(step: usize) -> Vec<u8> {
    sample_tensors(step, "ffn1_act.x").concat()
}

pub fn whisper() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/whisper-sample.safetensors");
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    names.iter().flat_map(|n| st.tensor(n).unwrap().data().to_vec()).collect()
}

pub fn bf16_to_f32(b: &[u8]) -> Vec<u8> {
    b.chunks_exact(2).flat_map(|e| (u32::from(u16::from_le_bytes([e[0], e[1]])) << 16).to_le_bytes()).collect()
}

/// Casts bf16 to an fp8 format with `e` exponent bits and `m` mantissa bits by truncation, with
/// saturation (good enough to get real fp8 statistics).
pub fn bf16_to_fp8(b: &[u8], e: u32, m: u32) -> Vec<u8> {
    let bias = (1i32 << (e - 1)) - 1;
    b.chunks_exact(2)
        .map(|x| {
            let v = u16::from_le_bytes([x[0], x[1]]);
            let sign = ((v >> 15) as u8) << 7;
            let exp = i32::from((v >> 7) & 0xff) - 127 + bias;
            let mant = ((v & 0x7f) >> (7 - m)) as u8;
            let max_exp = (1 << e) - 2;
            if exp <= 0 {
                sign
            } else if exp > max_exp {
                sign | ((max_exp as u8) << m) | ((1 << m) - 2)
            } else {
                sign | ((exp as u8) << m) | mant
            }
        })
        .collect()
}

pub fn train(dtype: DType, layout: Layout, data: &[u8]) -> Codebook {
    let hists = stream_histograms(dtype, layout, data).unwrap();
    let dists: Vec<_> = hists.iter().map(|h| h.distribution().unwrap_or_else(shuff::stats::Distribution::uniform)).collect();
    Codebook::from_distributions(dtype, layout, &dists, layout.default_max_len()).unwrap()
}

