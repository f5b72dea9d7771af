//! Histogram counting on real bf16 activations: four sub-tables against the one-table count.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shuff::stats::Histogram;

fn real_bytes() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/minilm-sample/step004.safetensors");
    let bytes = std::fs::read(path).expect("committed sample");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    names.iter().flat_map(|n| st.tensor(n).unwrap().data().to_vec()).collect()
}

fn histogram(c: &mut Criterion) {
    let data = real_bytes();
    // Exponent bytes alone: long runs of the same few values, the case sub-tables are for.
    let exponents: Vec<u8> = data.chunks_exact(2).map(|e| (u16::from_le_bytes([e[0], e[1]]) >> 7) as u8).collect();
    for (name, d) in [("tensor bytes", &data), ("exponent bytes", &exponents)] {
        let mut g = c.benchmark_group(format!("histogram/{name}"));
        g.throughput(Throughput::Bytes(d.len() as u64));
        g.bench_function("four sub-tables", |b| b.iter(|| Histogram::of(black_box(d))));
        g.bench_function("one table", |b| {
            b.iter(|| {
                let mut h = Histogram::new();
                h.add_simple(black_box(d));
                h
            })
        });
        g.finish();
    }
}

criterion_group!(benches, histogram);
criterion_main!(benches);
