//! Writes starting inputs for `container_decode`: small safetensors files cut from the real sample
//! (selector 1: compress them) and their containers (selector 0: read them), so the fuzzer starts
//! inside valid files. `cargo run --release --example container_seeds -- corpus/container_decode`
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use shuff_container::{compress, Coding};
use shuff_fuzz::sample;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: container_seeds DIR");
    std::fs::create_dir_all(&dir).unwrap();
    let s = sample();
    for (i, sizes) in [vec![0usize, 64], vec![2, 4096, 0], vec![70_000, 3000, 64], vec![300_000, 2]].into_iter().enumerate() {
        let mut at = 0;
        let chunks: Vec<(String, Vec<u8>)> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let n = n.min(s.len() - at) & !1;
                at += n;
                (format!("layer{k}.w"), s[at - n..at].to_vec())
            })
            .collect();
        let views: Vec<(String, TensorView)> =
            chunks.iter().map(|(name, b)| (name.clone(), TensorView::new(Dtype::BF16, vec![b.len() / 2], b).unwrap())).collect();
        let file = safetensors::serialize(views, &None).unwrap();
        let (packed, _) = compress(&file[..], Coding::Trained { name: "seed", families: true }, Vec::new(), &|_| ()).unwrap();
        std::fs::write(format!("{dir}/safetensors-{i}"), [&[1u8][..], &file].concat()).unwrap();
        std::fs::write(format!("{dir}/container-{i}"), [&[0u8][..], &packed].concat()).unwrap();
    }
}
