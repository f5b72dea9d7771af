//! End-to-end checks of the `shuff` binary on the committed real sample (tests/data).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sample(step: usize) -> String {
    repo().join(format!("tests/data/minilm-sample/step{step:03}.safetensors")).display().to_string()
}

fn shuff(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shuff")).args(args).output().expect("run shuff");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

const CLASSES: [(&str, &str); 6] = [
    ("weight", r"\.weight\."),
    ("weight_grad", r"\.weight_grad\."),
    ("ffn1_act", r"\.ffn1_act\.x"),
    ("ffn1_act_grad", r"\.ffn1_act_grad\."),
    ("ffn2_act", r"\.ffn2_act\.x"),
    ("ffn2_act_grad", r"\.ffn2_act_grad\."),
];

fn train(layout: &str, out: &Path) {
    let mut args = vec!["train".to_string(), "--layout".into(), layout.into(), "-o".into(), out.display().to_string()];
    for (c, m) in CLASSES {
        args.extend(["--class".into(), c.into(), "--match".into(), m.into()]);
    }
    args.extend((0..4).map(sample));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = shuff(&args);
    assert!(ok, "train failed: {err}");
}

fn eval_json(book: &Path) -> serde_json::Value {
    eval_json_with(book, &[])
}

fn eval_json_with(book: &Path, extra: &[&str]) -> serde_json::Value {
    let book = book.display().to_string();
    let s4 = sample(4);
    let mut args = vec!["eval", "--json", "--book", &book];
    args.extend_from_slice(extra);
    args.push(&s4);
    let (ok, out, err) = shuff(&args);
    assert!(ok, "eval failed: {err}");
    serde_json::from_str(&out).expect("eval --json prints JSON")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shuff-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn fixed_codebook_tracks_per_shard_huffman_on_a_held_out_step() {
    let book = tmp("bytes.json");
    train("bytes", &book);
    let r = eval_json(&book);
    let total = &r["total"]["percent"];
    let (fixed, huff, shannon) =
        (total["fixed"].as_f64().unwrap(), total["huffman"].as_f64().unwrap(), total["shannon"].as_f64().unwrap());
    // Real bf16 tensors compress by roughly a fifth in the paper's layout.
    assert!((15.0..35.0).contains(&fixed), "fixed {fixed}");
    assert!(shannon >= huff && huff >= fixed - 0.05, "{shannon} {huff} {fixed}");
    // The sample's shards are tiny (24 rows), so the fixed codebook can beat per-shard Huffman once
    // the latter pays for its code; without code cost it stays close.
    assert!(huff - fixed < 1.0, "fixed codebook {fixed}% is more than 1 pp behind per-shard Huffman {huff}%");
    assert_eq!(r["classes"].as_object().unwrap().len(), 6);
    assert_eq!(r["tensors"].as_array().unwrap().len(), 128);
}

#[test]
fn exponent_layout_beats_bytes_on_activations_and_weights() {
    let (b, e) = (tmp("b.json"), tmp("e.json"));
    train("bytes", &b);
    train("exponent", &e);
    let (rb, re) = (eval_json(&b), eval_json(&e));
    for class in ["ffn1_act", "ffn2_act", "weight"] {
        let pb = rb["classes"][class]["percent"]["fixed"].as_f64().unwrap();
        let pe = re["classes"][class]["percent"]["fixed"].as_f64().unwrap();
        assert!(pe - pb >= 8.0, "{class}: exponent {pe}% vs bytes {pb}%");
    }
}

#[test]
fn codebook_forms_agree_and_damage_is_reported() {
    let book = tmp("forms.json");
    train("exponent", &book);
    let bin = tmp("forms.bin");
    let (ok, _, err) = shuff(&["export", "--book", &book.display().to_string(), "--format", "binary", "-o", &bin.display().to_string()]);
    assert!(ok, "{err}");
    // The binary form keeps no selectors, so name the class and its tensors explicitly.
    let pick = ["--class", "ffn1_act", "--match", r"ffn1_act\.x"];
    let (j, b) = (eval_json_with(&book, &pick), eval_json_with(&bin, &pick));
    assert_eq!(j["tensors"].as_array().unwrap().len(), 16); // 2 layers × 8 shards
    assert_eq!(
        j["total"]["sizes"]["fixed_bits"],
        b["total"]["sizes"]["fixed_bits"]
    );
    // Classes × family members × 2 streams: the binary form stays under 160 bytes per stream code.
    let set: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&book).unwrap()).unwrap();
    let codes: u64 = set["classes"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| 1 + c["members"].as_array().map_or(0, |m| m.len() as u64))
        .sum();
    assert!(std::fs::metadata(&bin).unwrap().len() <= codes * 2 * 160);

    let text = std::fs::read_to_string(&book).unwrap();
    let damaged = tmp("damaged.json");
    std::fs::write(&damaged, text.replacen("\"lengths\": [", "\"lengths\": [0, ", 1)).unwrap();
    let (ok, _, err) = shuff(&["eval", "--book", &damaged.display().to_string(), &sample(4)]);
    assert!(!ok);
    assert!(err.contains("expected 256 code lengths, found 257"), "{err}");
    let (ok, _, err) = shuff(&["eval", "--book", "/nonexistent.json", &sample(4)]);
    assert!(!ok && err.contains("/nonexistent.json"), "{err}");
}

#[test]
fn f16_whisper_weights_train_and_evaluate() {
    let w = repo().join("tests/data/whisper-sample.safetensors").display().to_string();
    let book = tmp("whisper.json");
    let (ok, _, err) = shuff(&["train", "--layout", "exponent", "--class", "w", "-o", &book.display().to_string(), &w]);
    assert!(ok, "{err}");
    let (ok, out, err) = shuff(&["eval", "--json", "--book", &book.display().to_string(), &w]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["tensors"][0]["dtype"], "f16");
    assert!(r["total"]["percent"]["fixed"].as_f64().unwrap() > 5.0);
}

#[test]
fn encode_then_decode_restores_the_file_bit_for_bit() {
    let book = tmp("codec.json");
    train("exponent", &book);
    let other = tmp("codec-other.json");
    train("bytes", &other);
    let (enc, dec) = (tmp("step4.shf"), tmp("step4.safetensors"));
    let b = book.display().to_string();
    let (ok, _, err) = shuff(&["encode", "--book", &b, "--class", "ffn1_act", &sample(4), &enc.display().to_string()]);
    assert!(ok, "{err}");
    let original = std::fs::read(sample(4)).unwrap();
    assert!(std::fs::metadata(&enc).unwrap().len() < original.len() as u64);
    // `eval`'s stored size is the encoder's output to the byte, tensor by tensor.
    let (ok, listing, err) = shuff(&["inspect", "--json", &enc.display().to_string()]);
    assert!(ok, "{err}");
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let stored: std::collections::BTreeMap<String, u64> = listing
        .as_array()
        .expect("inspect --json lists tensors")
        .iter()
        .map(|t| (t["tensor"].as_str().unwrap().to_string(), t["stored_bytes"].as_u64().unwrap()))
        .collect();
    let report = eval_json_with(&book, &["--class", "ffn1_act", "--match", r"ffn1_act\.x"]);
    let evaluated: Vec<(String, u64)> =
        report["tensors"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap().to_string(), t["sizes"]["stored_bits"].as_u64().unwrap() / 8)).collect();
    assert!(evaluated.len() >= 16, "{evaluated:?}");
    for (name, bytes) in &evaluated {
        assert_eq!(stored.get(name), Some(bytes), "{name}: eval's stored bytes differ from what encode wrote");
    }
    let (ok, _, err) = shuff(&["decode", "--book", &b, &enc.display().to_string(), &dec.display().to_string()]);
    assert!(ok, "{err}");
    assert!(std::fs::read(&dec).unwrap() == original, "restored file differs");
    let (ok, _, err) = shuff(&["decode", "--book", &other.display().to_string(), &enc.display().to_string(), &dec.display().to_string()]);
    assert!(!ok && err.contains("exists (use -f"), "an existing output is not replaced without -f: {err}");
    let (ok, _, err) = shuff(&["decode", "-f", "--book", &other.display().to_string(), &enc.display().to_string(), &dec.display().to_string()]);
    assert!(!ok && err.contains("not in this codebook set"), "{err}");
    assert!(std::fs::read(&dec).unwrap() == original, "a failed decode leaves the existing output alone");
    // The input is never the output, even with -f.
    let (ok, _, err) = shuff(&["decode", "-f", "--book", &b, &enc.display().to_string(), &enc.display().to_string()]);
    assert!(!ok && err.contains("it is the input"), "{err}");
    // A file without a codebook set cannot be decompressed without one, and says so.
    let (ok, _, err) = shuff(&["decompress", "-f", "-o", &dec.display().to_string(), &enc.display().to_string()]);
    assert!(!ok && err.contains("carries no codebook set"), "{err}");
    let no_tmp = std::fs::read_dir(dec.parent().unwrap()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".step4.safetensors.")).count();
    assert_eq!(no_tmp, 0, "failed writes leave no temporary files behind");
}

/// SHA-256 of a file, from coreutils, so the check does not trust our own code.
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn compress_then_decompress_restores_model_files_bit_for_bit() {
    let whisper = repo().join("tests/data/whisper-sample.safetensors");
    for (i, input) in [whisper, PathBuf::from(sample(2))].into_iter().enumerate() {
        let (packed, restored) = (tmp(&format!("model{i}.shuff")), tmp(&format!("model{i}.safetensors")));
        let (ok, _, err) = shuff(&["compress", "-q", "-o", &packed.display().to_string(), &input.display().to_string()]);
        assert!(ok, "{err}");
        let (orig, comp) = (std::fs::metadata(&input).unwrap().len(), std::fs::metadata(&packed).unwrap().len());
        assert!(comp * 10 < orig * 9, "{} → {comp} bytes: less than 10% smaller", orig);
        let (ok, _, err) = shuff(&["decompress", "-o", &restored.display().to_string(), &packed.display().to_string()]);
        assert!(ok, "{err}");
        assert_eq!(sha256(&restored), sha256(&input));

        // inspect accounts for every byte of the data area.
        let (ok, out, err) = shuff(&["inspect", "--json", &packed.display().to_string()]);
        assert!(ok, "{err}");
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        let original: u64 = rows.as_array().unwrap().iter().map(|r| r["original_bytes"].as_u64().unwrap()).sum();
        let header = 8 + u64::from_le_bytes(std::fs::read(&input).unwrap()[..8].try_into().unwrap());
        assert_eq!(original + header, orig);

        // Damage anywhere is reported, never written out as a model file.
        let mut bytes = std::fs::read(&packed).unwrap();
        for pos in [9, bytes.len() / 3, bytes.len() / 2, bytes.len() - 2] {
            bytes[pos] ^= 0x40;
            let bad = tmp(&format!("bad{i}.shuff"));
            std::fs::write(&bad, &bytes).unwrap();
            let out = tmp(&format!("bad{i}.safetensors"));
            let (ok, _, err) = shuff(&["decompress", "-o", &out.display().to_string(), &bad.display().to_string()]);
            assert!(!ok && err.contains("error:"), "damage at {pos} not detected");
            assert!(!out.exists(), "a damaged file must not produce output");
            bytes[pos] ^= 0x40;
        }
    }
    // --family none: one codebook per class, restored the same.
    let (packed, restored) = (tmp("plain.shuff"), tmp("plain.safetensors"));
    let (ok, _, err) = shuff(&["compress", "-q", "--family", "none", "-o", &packed.display().to_string(), &sample(2)]);
    assert!(ok, "{err}");
    let (ok, _, err) = shuff(&["decompress", "-o", &restored.display().to_string(), &packed.display().to_string()]);
    assert!(ok, "{err}");
    assert_eq!(sha256(&restored), sha256(Path::new(&sample(2))));
    let (ok, _, err) = shuff(&["compress", "-q", "--family", "sometimes", "-o", &tmp("x.shuff").display().to_string(), &sample(2)]);
    assert!(!ok && err.contains("sometimes"), "{err}");
}

#[test]
fn compress_with_a_trained_book_uses_its_classes() {
    let book = tmp("compress-book.json");
    train("exponent", &book);
    let packed = tmp("withbook.shuff");
    let (ok, _, err) = shuff(&["compress", "-q", "--book", &book.display().to_string(), "-o", &packed.display().to_string(), &sample(4)]);
    assert!(ok, "{err}");
    let (ok, out, err) = shuff(&["inspect", "--json", &packed.display().to_string()]);
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    for r in rows.as_array().unwrap() {
        let name = r["tensor"].as_str().unwrap();
        if name.contains("ffn1_act.x") {
            assert_eq!(r["class"], "ffn1_act", "{name}");
            assert_eq!(r["layout"], "exponent");
        }
    }
    let restored = tmp("withbook.safetensors");
    let (ok, _, err) = shuff(&["decompress", "-o", &restored.display().to_string(), &packed.display().to_string()]);
    assert!(ok, "{err}");
    assert_eq!(sha256(&restored), sha256(Path::new(&sample(4))));
}

#[test]
fn analyze_matches_eval_exactly_and_writes_a_report() {
    let dir = tmp("analyze");
    let mut args = vec!["analyze".to_string(), "-o".into(), dir.display().to_string()];
    args.extend((0..5).map(sample));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, table, err) = shuff(&args);
    assert!(ok, "{err}");
    assert!(table.lines().any(|l| l.starts_with("| ffn1_act ")) && table.contains("exponent layout"), "{table}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    for layout in report["layouts"].as_array().unwrap() {
        let name = layout["layout"].as_str().unwrap();
        // The codebooks analyze trained, measured by eval on the held-out step.
        let eval = eval_json_with(&dir.join(format!("book-{name}.json")), &[]);
        let classes = layout["classes"].as_object().unwrap();
        assert_eq!(classes.len(), 6);
        for (class, c) in classes {
            let e = &eval["classes"][class]["sizes"];
            for field in ["original_bits", "huffman_bits", "huffman_code_bits", "fixed_bits", "shannon_bits", "messages"] {
                assert_eq!(c["sizes"][field], e[field], "{name}/{class}/{field}");
            }
            // Curves the plots draw: a point per step distance and per max length 8..=16.
            assert_eq!(c["excess_by_distance"].as_array().unwrap().len(), 4);
            assert_eq!(c["by_max_len"].as_array().unwrap().len(), 9);
            let kl = &c["kl_steps"][1];
            assert!((0..5).all(|i| kl[i][i].as_f64().unwrap().abs() < 1e-12), "KL of a step with itself is 0");
        }
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    // Per layout: 3 summary plots; per class: 3 heatmaps, a distribution plot, a code-length plot.
    assert_eq!(html.matches("<svg").count(), 2 * (3 + 6 * 5));
    assert!(std::fs::read_to_string(dir.join("report.md")).unwrap().contains("drift and code length"));
    // Suggested classes: the numbers that name layers and shards are taken out, those that name
    // different kinds of activation (ffn1 vs ffn2) kept; pasted into train, they select every tensor.
    let suggested = report["suggested_classes"].as_array().unwrap();
    let names: Vec<&str> = suggested.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"layer#.ffn1_act.x.shard#") && names.contains(&"layer#.ffn2_act.x.shard#"), "{names:?}");
    assert!(names.iter().all(|n| !n.contains("layer1") && !n.contains("shard0")), "{names:?}");
    assert!(table.contains("--class 'layer#.ffn1_act.x.shard#' --match '^layer\\d+\\.ffn1_act\\.x\\.shard\\d+$'"), "{table}");
    let book = tmp("suggested.json");
    let mut train = vec!["train".to_string(), "--layout".into(), "exponent".into(), "-o".into(), book.display().to_string()];
    for c in suggested {
        train.extend(["--class".into(), c["name"].as_str().unwrap().to_string(), "--match".into(), c["selector"].as_str().unwrap().to_string()]);
    }
    train.extend((0..4).map(sample));
    let (ok, _, err) = shuff(&train.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    assert_eq!(eval_json_with(&book, &[])["tensors"].as_array().unwrap().len(), 128, "every tensor of the held-out step has a class");
}

#[test]
fn demo_runs_end_to_end_on_the_committed_sample() {
    let dir = tmp("demo");
    let (ok, out, err) = shuff(&["demo", "-o", &dir.display().to_string()]);
    assert!(ok, "{err}");
    for needle in ["bytes layout", "exponent layout", "restored bit for bit", "huff0", "report.html"] {
        assert!(out.contains(needle), "demo output lacks `{needle}`:\n{out}");
    }
    assert!(dir.join("report.html").exists());
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::io::{BufRead, BufReader};
    // Enough tensors that the listing overflows a pipe's 64 KiB buffer (synthetic: this is about
    // output, not data).
    let data: Vec<Vec<u8>> = (0..3000u32).map(|i| (i * 4..i * 4 + 8).map(|b| b as u8).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("t{i}"), safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![4], d).unwrap()))
        .collect();
    let many = tmp("many.safetensors");
    safetensors::serialize_to_file(views, &None, &many).unwrap();
    let packed = tmp("pipe.shuff");
    let (ok, _, err) = shuff(&["compress", "-q", "-o", &packed.display().to_string(), &many.display().to_string()]);
    assert!(ok, "{err}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_shuff"))
        .args(["inspect", &packed.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // then drop: `| head -1`
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("| tensor"), "{first}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn analyze_orders_steps_by_name_or_metadata() {
    for order in ["name", "metadata"] {
        let dir = tmp(&format!("order-{order}"));
        let mut args = vec!["analyze".to_string(), "--layouts".into(), "bytes".into(), "--step-order".into(), order.into(), "-o".into(), dir.display().to_string()];
        args.extend([4, 1, 0, 3, 2].map(sample));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = shuff(&args);
        assert!(ok, "{err}");
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(report["trained_on"], serde_json::json!((0..4).map(sample).collect::<Vec<_>>()), "{order}");
        assert_eq!(report["held_out"], sample(4));
    }
}

/// The class-order bug: `train` tries classes in the order given; `eval` and `compress` must do
/// the same with the set's classes, even when a catch-all class sorts first by name.
#[test]
fn overlapping_selectors_assign_tensors_alike_in_train_eval_and_compress() {
    let book = tmp("order.json");
    let book_s = book.display().to_string();
    let (s0, s1) = (sample(0), sample(1));
    let (ok, _, err) = shuff(&["train", "--layout", "bytes", "-o", &book_s, "--class", "z_ffn1", "--match", r"ffn1_act\.x", "--class", "a_all", "--match", ".", &s0, &s1]);
    assert!(ok, "train failed: {err}");
    let report = eval_json(&book);
    let tensors = report["tensors"].as_array().unwrap();
    assert!(tensors.len() > 10);
    for t in tensors {
        let (name, class) = (t["name"].as_str().unwrap(), t["class"].as_str().unwrap());
        let want = if name.contains("ffn1_act.x") { "z_ffn1" } else { "a_all" };
        assert_eq!(class, want, "{name}");
    }
    // compress --book assigns the same way: the ffn1 activations' frames name z_ffn1's codebook.
    let set = shuff::CodebookSet::from_json(&std::fs::read_to_string(&book).unwrap()).unwrap();
    let sel = shuff::ClassSelector::from_set(&set).unwrap();
    assert_eq!(sel.class_of("layer1.ffn1_act.x.shard0"), Some("z_ffn1"));
    let out = tmp("order.shuff");
    let (ok, _, err) = shuff(&["compress", "--book", &book_s, "-o", &out.display().to_string(), &sample(4)]);
    assert!(ok, "compress failed: {err}");
    let (ok, listing, err) = shuff(&["inspect", "--json", &out.display().to_string()]);
    assert!(ok, "inspect failed: {err}");
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let rows = listing.as_array().unwrap();
    assert!(rows.len() > 10);
    for t in rows {
        let (name, class) = (t["tensor"].as_str().unwrap(), t["class"].as_str().unwrap());
        let want = if name.contains("ffn1_act.x") { "z_ffn1" } else { "a_all" };
        assert_eq!(class, want, "compress: {name}");
    }
}

/// Tensor names are data: report.html escapes them, and a file with hundreds of classes and layers
/// gives a report of bounded size (1,000 classes from an 88 KB input made a 1.2 GB report).
#[test]
fn analyze_escapes_names_and_bounds_the_report() {
    use safetensors::tensor::TensorView;
    let dir = tmp("hostile-analyze");
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<Vec<u8>> = (0..2u16).map(|s| (0..64u16).flat_map(|i| (0x3f00 + (i * 7 + s) % 23).to_le_bytes()).collect()).collect();
    let mut steps = Vec::new();
    for step in 0..2 {
        let names: Vec<String> = (0..300).flat_map(|c| (0..3).map(move |l| format!("layer{l}.k{c}<script>x</script>.x.shard0"))).collect();
        let views: Vec<(String, TensorView)> = names.iter().map(|n| (n.clone(), TensorView::new(safetensors::Dtype::BF16, vec![64], &data[step]).unwrap())).collect();
        let path = dir.join(format!("step{step}.safetensors"));
        std::fs::write(&path, safetensors::serialize(views, &None).unwrap()).unwrap();
        steps.push(path.display().to_string());
    }
    let out = dir.join("report");
    let (ok, _, err) = shuff(&["analyze", "--group", r"^layer\d+\.([^.]+)\.", "--layouts", "bytes", "-o", &out.display().to_string(), &steps[0], &steps[1]]);
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("<script>"), "names must be escaped");
    assert!(html.contains("&lt;script&gt;"));
    assert!(html.len() < 4 << 20, "report.html is {} bytes", html.len());
}

/// `-` is standard input or output, as with gzip and zstd.
#[test]
fn compress_and_decompress_through_pipes() {
    let bin = env!("CARGO_BIN_EXE_shuff");
    let model = repo().join("tests/data/whisper-sample.safetensors");
    let script = format!("'{bin}' compress -q -o - '{m}' | '{bin}' decompress -q -o - - | cmp - '{m}'", m = model.display());
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Every example in a `--help` text (an indented line starting with `shuff `, with `\`
/// continuations) runs as printed when pasted into a shell — from a directory where the
/// repository's `tests/` is at hand, so that outputs land in a scratch place.
#[test]
fn help_examples_run_when_pasted() {
    let (ok, help, _) = shuff(&["--help"]);
    assert!(ok);
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    let scratch = tmp("help-examples");
    std::fs::create_dir_all(&scratch).unwrap();
    let link = scratch.join("tests");
    if !link.exists() {
        std::os::unix::fs::symlink(repo().join("tests"), &link).unwrap();
    }
    let mut ran = 0;
    for c in &commands {
        let (ok, text, err) = shuff(&[c, "--help"]);
        assert!(ok, "{c}: {err}");
        let mut lines = text.lines().peekable();
        while let Some(l) = lines.next() {
            let Some(cmd) = l.trim_start().strip_prefix("shuff ").filter(|_| l.starts_with("    ")) else { continue };
            let mut full = format!("'{}' {cmd}", env!("CARGO_BIN_EXE_shuff"));
            while full.ends_with('\\') {
                full.pop();
                full.push(' ');
                full.push_str(lines.next().expect("a continuation").trim());
            }
            let out = Command::new("sh").arg("-c").arg(&full).current_dir(&scratch).output().unwrap();
            assert!(out.status.success(), "`shuff {c} --help` example failed: {full}\n{}", String::from_utf8_lossy(&out.stderr));
            ran += 1;
        }
    }
    assert!(ran >= 1, "no examples found");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = shuff(&["completions", shell]);
        assert!(ok, "{err}");
        assert!(out.contains("decompress") && out.contains("force"), "{shell}");
    }
}

/// Every README example that starts with `$ ` runs as written, block by block in order in one
/// scratch directory (a later block may use an earlier one's output), with `shuff` on the PATH.
/// The README's `data/` (a full capture, not committed) is stood in for by the committed sample:
/// `data/minilm/step000..007` cycle through its five steps, and `data/minilm-model-bf16.safetensors`
/// is one of them (real bf16 tensors).
#[test]
fn readme_examples_run() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let scratch = tmp("readme-examples");
    let data = scratch.join("data/minilm");
    std::fs::create_dir_all(&data).unwrap();
    for step in 0..8 {
        std::fs::copy(sample(step % 5), data.join(format!("step{step:03}.safetensors"))).unwrap();
    }
    std::fs::copy(sample(4), scratch.join("data/minilm-model-bf16.safetensors")).unwrap();
    // Blocks: runs of indented lines; in each, the `$ ` lines with their `\` continuations.
    let mut scripts: Vec<Vec<String>> = vec![Vec::new()];
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if !l.starts_with("    ") {
            if !scripts.last().unwrap().is_empty() {
                scripts.push(Vec::new());
            }
            continue;
        }
        let Some(cmd) = l.trim_start().strip_prefix("$ ") else { continue };
        let mut full = cmd.to_string();
        while full.ends_with('\\') {
            full.pop();
            full.push_str(lines.next().expect("a continuation").trim());
        }
        scripts.last_mut().unwrap().push(full);
    }
    scripts.retain(|s| !s.is_empty());
    assert!(scripts.iter().map(Vec::len).sum::<usize>() >= 8, "README examples not found: {scripts:?}");
    let bin = Path::new(env!("CARGO_BIN_EXE_shuff")).parent().unwrap().display().to_string();
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    for script in &scripts {
        let text = format!("set -e\n{}\n", script.join("\n"));
        let out = Command::new("sh").arg("-c").arg(&text).current_dir(&scratch).env("PATH", &path).output().unwrap();
        assert!(out.status.success(), "README example failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
}
