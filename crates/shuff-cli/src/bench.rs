//! `shuff bench`: shuff against huff0 and memcpy, side by side on the same real bytes, in one process.

use crate::huff0::{Block, Huff0, BLOCK};
use anyhow::{bail, Context, Result};
use regex::Regex;
use serde::Serialize;
use shuff::{max_frame_len, EncodeOptions, Family};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Parses sizes like `4KiB`, `64KiB`, `1MiB`, `16MiB`, `1000`.
pub fn parse_size(s: &str) -> Result<usize> {
    let s = s.trim();
    let (num, mult) = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("B", 1)]
        .iter()
        .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((s, 1));
    let n: usize = num.trim().parse().map_err(|_| anyhow::anyhow!("bad size `{s}` (examples: 4KiB, 64KiB, 1MiB)"))?;
    Ok(n * mult)
}

/// Median seconds per call of each of `fs`, measured in turns: every function's sample `i` is
/// taken before any function's sample `i + 1`, each sample a batch of calls lasting ≥ 2 ms. On a
/// shared machine a slow spell then slows every coder alike, so the ratios between them (what the
/// table is for) stay honest even when the absolute speeds wander; measured one after the other,
/// a spell that hit only huff0's turn once showed shuff 1.6× ahead where it was 1.0×.
fn median_secs_interleaved(fs: &mut [&mut dyn FnMut()], samples: usize) -> Vec<f64> {
    let iters: Vec<usize> = fs
        .iter_mut()
        .map(|f| {
            let mut iters = 1usize;
            loop {
                let t = Instant::now();
                for _ in 0..iters {
                    f();
                }
                if t.elapsed() >= Duration::from_millis(2) {
                    return iters;
                }
                iters *= 2;
            }
        })
        .collect();
    let mut times = vec![Vec::with_capacity(samples); fs.len()];
    for _ in 0..samples {
        for ((f, &n), v) in fs.iter_mut().zip(&iters).zip(&mut times) {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            v.push(t.elapsed().as_secs_f64() / n as f64);
        }
    }
    times
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

#[derive(Serialize, Debug)]
pub struct Row {
    pub size: usize,
    pub threads: usize,
    /// GB/s of tensor bytes (10^9 bytes per second), medians.
    pub shuff_encode_gbps: f64,
    pub shuff_decode_gbps: f64,
    pub huff0_encode_gbps: f64,
    pub huff0_decode_gbps: f64,
    pub memcpy_gbps: f64,
    pub encode_vs_huff0: f64,
    pub decode_vs_huff0: f64,
    /// Microseconds of the encode spent choosing the family's members (next to none for a family
    /// of one), timed alone in the same turns.
    pub choice_us: f64,
    pub shuff_bytes: usize,
    pub huff0_bytes: usize,
}

/// huff0 over `msg` in blocks of [`BLOCK`] bytes; returns the total size (raw blocks count fully).
fn huff0_compress(h: &mut Huff0, msg: &[u8], out: &mut [u8], blocks: &mut Vec<(usize, usize, bool)>) -> usize {
    blocks.clear();
    let mut pos = 0;
    for b in msg.chunks(BLOCK) {
        let dst = &mut out[pos..pos + BLOCK + 1024];
        match h.compress(b, dst) {
            Block::Coded(n) => {
                blocks.push((pos, n, true));
                pos += n;
            }
            Block::Raw => {
                dst[..b.len()].copy_from_slice(b);
                blocks.push((pos, b.len(), false));
                pos += b.len();
            }
        }
    }
    pos
}

fn huff0_decompress(h: &mut Huff0, comp: &[u8], blocks: &[(usize, usize, bool)], out: &mut [u8]) -> bool {
    let mut ok = true;
    for (&(pos, n, coded), o) in blocks.iter().zip(out.chunks_mut(BLOCK)) {
        if coded {
            ok &= h.decompress(&comp[pos..pos + n], o);
        } else {
            o.copy_from_slice(&comp[pos..pos + n]);
        }
    }
    ok
}

/// Runs the comparison for one message size. shuff encodes as `encode`/`compress` do: each
/// stream's family member picked from a sample of the message (that choice is part of the time).
pub fn bench_size(
    book: &Family,
    source: &[u8],
    size: usize,
    threads: usize,
    samples: usize,
) -> Result<Row> {
    let elem = book.dtype().size();
    let size = size / elem * elem;
    if source.is_empty() {
        bail!("no data to benchmark");
    }
    let msg: Vec<u8> = source.iter().cycle().take(size).copied().collect();
    let opts = EncodeOptions { checksum: false, parallel: threads > 1, ..Default::default() };
    let mut frame = vec![0u8; max_frame_len(book.dtype(), book.layout(), size)];
    let mut back = vec![0u8; size];

    let frame_len = book.encode_into(&msg, &mut frame, opts, None)?;
    book.decode_into(&frame[..frame_len], &mut back)?;
    if back != msg {
        bail!("shuff round trip failed at {size} bytes");
    }
    let mut h = Huff0::new();
    let mut hout = vec![0u8; size + size.div_ceil(BLOCK) * 1024 + BLOCK];
    let mut blocks = Vec::new();
    let huff0_bytes = huff0_compress(&mut h, &msg, &mut hout, &mut blocks);
    back.fill(0);
    if !huff0_decompress(&mut h, &hout, &blocks, &mut back) || back != msg {
        bail!("huff0 round trip failed at {size} bytes");
    }
    // Each timed coder writes its own buffers, so that all can take turns; the member choice (part
    // of shuff's encode) is also timed alone, to show what it costs.
    let (mut enc_frame, mut hdec_back, mut copy_back) = (frame.clone(), back.clone(), back.clone());
    let (mut h_enc, mut hout_enc, mut blocks_enc) = (Huff0::new(), hout.clone(), Vec::new());
    let times = median_secs_interleaved(
        &mut [
            &mut || drop(black_box(book.encode_into(black_box(&msg), &mut enc_frame, opts, None))),
            &mut || drop(black_box(book.decode_into(black_box(&frame[..frame_len]), &mut back))),
            &mut || { black_box(huff0_compress(&mut h_enc, black_box(&msg), &mut hout_enc, &mut blocks_enc)); },
            &mut || { black_box(huff0_decompress(&mut h, black_box(&hout), &blocks, &mut hdec_back)); },
            &mut || copy_back.copy_from_slice(black_box(&msg)),
            &mut || drop(black_box(book.encoder_choice(black_box(&msg)))),
        ],
        samples,
    );
    let [enc, dec, henc, hdec, mcpy, choice] = times[..] else { unreachable!("six timed") };

    let gbps = |t: f64| size as f64 / t / 1e9;
    Ok(Row {
        size,
        threads,
        shuff_encode_gbps: gbps(enc),
        shuff_decode_gbps: gbps(dec),
        huff0_encode_gbps: gbps(henc),
        huff0_decode_gbps: gbps(hdec),
        memcpy_gbps: gbps(mcpy),
        encode_vs_huff0: henc / enc,
        decode_vs_huff0: hdec / dec,
        choice_us: choice * 1e6,
        shuff_bytes: frame_len,
        huff0_bytes,
    })
}

pub fn print_rows(rows: &[Row]) {
    let mut t = crate::table::new(
        &["size", "threads", "shuff enc GB/s", "shuff dec GB/s", "huff0 enc GB/s", "huff0 dec GB/s", "memcpy GB/s", "enc ×huff0", "dec ×huff0", "choice µs", "shuff bytes", "huff0 bytes"],
        1,
    );
    for r in rows {
        t.add_row(vec![
            human(r.size),
            r.threads.to_string(),
            format!("{:.2}", r.shuff_encode_gbps),
            format!("{:.2}", r.shuff_decode_gbps),
            format!("{:.2}", r.huff0_encode_gbps),
            format!("{:.2}", r.huff0_decode_gbps),
            format!("{:.1}", r.memcpy_gbps),
            format!("{:.2}×", r.encode_vs_huff0),
            format!("{:.2}×", r.decode_vs_huff0),
            format!("{:.2}", r.choice_us),
            r.shuff_bytes.to_string(),
            r.huff0_bytes.to_string(),
        ]);
    }
    println!("{t}");
}

fn human(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{}KiB", n >> 10)
    } else {
        n.to_string()
    }
}

/// `shuff bench`: see the command's help.
#[allow(clippy::too_many_arguments)] // the command's options, one by one
pub fn run(
    book: &std::path::Path,
    class: &str,
    filter: Option<String>,
    sizes: &[String],
    threads: usize,
    samples: usize,
    json: bool,
    input: &std::path::Path,
) -> Result<()> {
    let set = crate::load_book(book)?;
    let cb = set
        .get(class)
        .with_context(|| format!("class `{class}` is not in the codebook set"))?;
    let pattern = filter.unwrap_or_else(|| cb.provenance.selector.clone());
    let re = (!pattern.is_empty())
        .then(|| Regex::new(&pattern))
        .transpose()
        .context("bad --match regex")?;
    let file = crate::tensors::TensorFile::open(input)?;
    let source: Vec<u8> = file
        .tensors(re.as_ref())?
        .iter()
        .filter(|t| t.dtype == cb.codebook.dtype())
        .flat_map(|t| t.data.iter().copied())
        .collect();
    if source.is_empty() {
        bail!(
            "no {} tensor in {} matches `{pattern}`; it has: {}",
            cb.codebook.dtype(),
            input.display(),
            file.some_names()
        );
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let rows = pool.install(|| {
        sizes
            .iter()
            .map(|s| bench_size(&cb.family, &source, parse_size(s)?, threads.max(1), samples))
            .collect::<Result<Vec<_>>>()
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        eprintln!(
                    "class {class}: {}/{}, family of {} member(s), {} bytes of real tensor data; huff0 in {} KiB blocks, single-threaded",
                    cb.codebook.dtype(),
                    cb.codebook.layout(),
                    cb.family.members().len(),
                    source.len(),
                    crate::huff0::BLOCK >> 10
                );
                for (k, code) in cb.codebook.streams().iter().enumerate() {
                    // The first table is the one the lane loop reads at every step; the others
                    // only the careful path at each lane's end.
                    let tables = code.decoder_tables();
                    let (hot, rest) = tables.split_first().expect("the lane loop's table");
                    let list: Vec<String> = rest.iter().map(|(n, b)| format!("{n} {}", kib(*b))).collect();
                    // Eight lanes (frames from 16 KiB, `shuff::cpu_lanes`) write through a 1.5 KiB stage.
                    let lanes = if code.has_eight_lane_loop() { "8 lanes from 16 KiB (through a 1.5 KiB stage), 4 below" } else { "4 lanes" };
                    eprintln!(
                        "stream {k} decoder: {:?} kernel, {lanes}, lane loop reads the {} table, {} ({}); lane ends also read {}",
                        code.lane_kernel(),
                        hot.0,
                        kib(hot.1),
                        cache_fit(hot.1),
                        list.join(" + ")
                    );
                }
                print_rows(&rows);
            }
            Ok(())
        }

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// The smallest data cache of this CPU (Linux sysfs, cpu0) that holds `bytes`, e.g. "fits L1d, 32 KiB".
fn cache_fit(bytes: usize) -> String {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut caches: Vec<(u32, String, usize)> = (0..8)
        .filter_map(|i| {
            let read = |f: &str| std::fs::read_to_string(dir.join(format!("index{i}/{f}"))).ok().map(|s| s.trim().to_string());
            let (level, kind, size) = (read("level")?.parse().ok()?, read("type")?, read("size")?);
            let size = size.strip_suffix('K').and_then(|k| k.parse::<usize>().ok()).map(|k| k << 10).or_else(|| size.strip_suffix('M').and_then(|m| m.parse::<usize>().ok()).map(|m| m << 20))?;
            (kind != "Instruction").then(|| (level, if kind == "Data" { format!("L{level}d") } else { format!("L{level}") }, size))
        })
        .collect();
    caches.sort();
    match caches.iter().find(|(_, _, size)| *size >= bytes) {
        Some((_, name, size)) => format!("fits {name}, {}", kib(*size)),
        None if caches.is_empty() => "cache sizes unknown".into(),
        None => "larger than every cache".into(),
    }
}
