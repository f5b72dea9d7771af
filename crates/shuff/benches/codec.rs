//! Encode/decode throughput on real bf16 activations, to catch regressions, with each decoder
//! lane kernel and the portable build on their own (the side-by-side comparison with huff0 is
//! `shuff bench`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shuff::stats::stream_histograms;
use shuff::{decode_into, encode_into, max_frame_len, Codebook, DType, EncodeOptions, KernelChoice, LaneKernel, Layout};

fn activations(step: usize) -> Vec<u8> {
    let path = format!("{}/../../tests/data/minilm-sample/step{step:03}.safetensors", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(path).expect("committed sample");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().filter(|n| n.contains("ffn1_act.x")).cloned().collect();
    names.sort();
    names.iter().flat_map(|n| st.tensor(n).unwrap().data().to_vec()).collect()
}

fn codec(c: &mut Criterion) {
    let (train, test) = (activations(0), activations(4));
    let opts = EncodeOptions { checksum: false, parallel: false, ..Default::default() };
    for layout in [Layout::Bytes, Layout::Exponent] {
        let dists: Vec<_> = stream_histograms(DType::Bf16, layout, &train).unwrap().iter().map(|h| h.distribution().unwrap()).collect();
        let book = Codebook::from_distributions(DType::Bf16, layout, &dists, layout.default_max_len()).unwrap();
        for size in [4 << 10, 64 << 10] {
            let msg: Vec<u8> = test.iter().cycle().take(size).copied().collect();
            let mut frame = vec![0u8; max_frame_len(DType::Bf16, layout, size)];
            let n = encode_into(&book, &msg, &mut frame, opts).unwrap();
            let mut out = vec![0u8; size];
            let mut g = c.benchmark_group(format!("{layout}/{}KiB", size >> 10));
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function("encode", |b| b.iter(|| encode_into(&book, black_box(&msg), &mut frame, opts).unwrap()));
            g.bench_function("decode", |b| b.iter(|| decode_into(&book, black_box(&frame[..n]), &mut out).unwrap()));
            // Each lane kernel forced on every stream (the default above is each stream's own).
            for kernel in [LaneKernel::Single, LaneKernel::Pair, LaneKernel::Quad] {
                let choice = KernelChoice { kernel: Some(kernel), portable: false };
                g.bench_function(format!("decode/{kernel:?}"), |b| {
                    b.iter(|| shuff::decode::decode_into_with(&book, black_box(&frame[..n]), &mut out, choice).unwrap())
                });
            }
            let portable = KernelChoice { kernel: None, portable: true };
            g.bench_function("decode/portable", |b| b.iter(|| shuff::decode::decode_into_with(&book, black_box(&frame[..n]), &mut out, portable).unwrap()));
            g.finish();
        }
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
