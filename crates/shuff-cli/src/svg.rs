//! Small, dependency-free SVG charts for `shuff analyze`'s report: grouped bars, line charts and
//! heatmaps, each a self-contained `<svg>` element to inline in HTML.

use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 320.0;
/// Plot margins: left (y labels), right (legend), top (title), bottom (x labels).
const L: f64 = 60.0;
const R: f64 = 150.0;
const T: f64 = 30.0;
const B: f64 = 60.0;
/// Colour-blind-safe palette (Okabe–Ito).
const COLORS: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];

/// `s` as HTML/SVG text or attribute value (tensor and class names come from files).
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A "nice" tick step for a range.
fn tick_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.abs().log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|&s| s >= raw).unwrap_or(10.0 * mag)
}

fn open(title: &str, height: f64) -> String {
    let mut s = String::new();
    write!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" font-family="sans-serif" font-size="11">"#).unwrap();
    write!(s, r#"<text x="{}" y="18" text-anchor="middle" font-size="13" font-weight="bold">{}</text>"#, W / 2.0, esc(title)).unwrap();
    s
}

/// Y axis with grid lines from `lo` to `hi`; returns the value → pixel map.
fn y_axis(s: &mut String, lo: f64, hi: f64, label: &str) -> impl Fn(f64) -> f64 {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 1.0, lo + 1.0) };
    let y = move |v: f64| T + (H - T - B) * (1.0 - (v - lo) / (hi - lo));
    let step = tick_step(hi - lo);
    let mut v = (lo / step).ceil() * step;
    while v <= hi + 1e-9 {
        let py = y(v);
        write!(s, r##"<line x1="{L}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##, W - R, L - 4.0, py + 4.0, fmt_tick(v)).unwrap();
        v += step;
    }
    write!(s, r#"<text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"#, (T + H - B) / 2.0, esc(label)).unwrap();
    write!(s, r##"<line x1="{L}" x2="{L}" y1="{T}" y2="{}" stroke="#333"/><line x1="{L}" x2="{}" y1="{}" y2="{}" stroke="#333"/>"##, H - B, W - R, H - B, H - B).unwrap();
    y
}

fn fmt_tick(v: f64) -> String {
    let v = if v.abs() < 1e-9 { 0.0 } else { v };
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn legend(s: &mut String, names: &[&str]) {
    for (i, n) in names.iter().enumerate() {
        let y = T + 14.0 * i as f64;
        write!(s, r#"<rect x="{}" y="{y}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#, W - R + 10.0, COLORS[i % 8], W - R + 24.0, y + 9.0, esc(n)).unwrap();
    }
}

/// Grouped bars: one group per category, one bar per series.
pub fn bars(title: &str, y_label: &str, categories: &[String], series: &[(&str, Vec<f64>)]) -> String {
    let mut s = open(title, H);
    let all = series.iter().flat_map(|(_, v)| v.iter().copied());
    let (lo, hi) = all.fold((0f64, 0f64), |(a, b), v| (a.min(v), b.max(v)));
    let y = y_axis(&mut s, lo, hi * 1.05, y_label);
    let gw = (W - L - R) / categories.len().max(1) as f64;
    let bw = gw * 0.8 / series.len().max(1) as f64;
    for (ci, c) in categories.iter().enumerate() {
        let x0 = L + gw * ci as f64 + gw * 0.1;
        for (si, (name, v)) in series.iter().enumerate() {
            let val = v[ci];
            let (y0, y1) = (y(0f64.max(val)), y(0f64.min(val)));
            write!(s, r#"<rect x="{:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} {val:.3}</title></rect>"#, x0 + bw * si as f64, bw.max(1.0) - 0.5, (y1 - y0).max(0.5), COLORS[si % 8], esc(c), esc(name)).unwrap();
        }
        write!(s, r#"<text transform="translate({:.1},{}) rotate(30)" font-size="10">{}</text>"#, x0 + gw * 0.3, H - B + 12.0, esc(c)).unwrap();
    }
    legend(&mut s, &series.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    s.push_str("</svg>");
    s
}

/// Line chart of (x, y) series; `log_y` plots log10(y) (values ≤ 0 are skipped).
pub fn lines(title: &str, x_label: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)], log_y: bool) -> String {
    let mut s = open(title, H);
    let tf = |v: f64| if log_y { v.log10() } else { v };
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).filter(|&(_, v)| !log_y || v > 0.0).collect();
    let (xlo, xhi) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), &(x, _)| (a.min(x), b.max(x)));
    let (ylo, yhi) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), &(_, v)| (a.min(tf(v)), b.max(tf(v))));
    if pts.is_empty() {
        s.push_str("</svg>");
        return s;
    }
    let y = y_axis(&mut s, if log_y { ylo } else { ylo.min(0.0) }, yhi + (yhi - ylo).abs() * 0.05 + 1e-12, &if log_y { format!("log10 {y_label}") } else { y_label.to_string() });
    let (xlo, xhi) = if xhi > xlo { (xlo, xhi) } else { (xlo - 1.0, xlo + 1.0) };
    let x = |v: f64| L + (W - L - R) * (v - xlo) / (xhi - xlo);
    let step = tick_step(xhi - xlo).max(if xhi - xlo >= 4.0 { 1.0 } else { 0.0 });
    let mut v = (xlo / step).ceil() * step;
    while v <= xhi + 1e-9 {
        write!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, x(v), H - B + 14.0, fmt_tick(v)).unwrap();
        v += step;
    }
    write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, (L + W - R) / 2.0, H - B + 32.0, esc(x_label)).unwrap();
    for (i, (_, p)) in series.iter().enumerate() {
        let path: Vec<String> = p.iter().filter(|&&(_, v)| !log_y || v > 0.0).map(|&(a, b)| format!("{:.1},{:.1}", x(a), y(tf(b)))).collect();
        write!(s, r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#, COLORS[i % 8], path.join(" ")).unwrap();
        if p.len() <= 20 {
            for &(a, b) in p.iter().filter(|&&(_, v)| !log_y || v > 0.0) {
                write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"><title>{a}: {b:.4}</title></circle>"#, x(a), y(tf(b)), COLORS[i % 8]).unwrap();
            }
        }
    }
    legend(&mut s, &series.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>());
    s.push_str("</svg>");
    s
}

/// Rows and columns a heatmap shows at most (the report's size must not grow with the square of a
/// file's layer count).
pub const MAX_HEATMAP: usize = 48;

/// Heatmap of a square matrix (e.g. KL divergences), white (0) to dark blue (max), values printed;
/// the first [`MAX_HEATMAP`] rows and columns.
pub fn heatmap(title: &str, labels: &[String], m: &[Vec<f64>]) -> String {
    let title = if labels.len() > MAX_HEATMAP { format!("{title}, first {MAX_HEATMAP} of {}", labels.len()) } else { title.to_string() };
    let (title, labels) = (title.as_str(), &labels[..labels.len().min(MAX_HEATMAP)]);
    let m: Vec<&[f64]> = m.iter().take(MAX_HEATMAP).map(|r| &r[..r.len().min(MAX_HEATMAP)]).collect();
    let n = labels.len().max(1);
    let cell = (240.0 / n as f64).clamp(14.0, 40.0);
    let (x0, y0) = (90.0, 40.0);
    let height = y0 + cell * n as f64 + 20.0;
    let mut s = open(title, height.max(120.0));
    let max = m.iter().flat_map(|r| r.iter()).copied().filter(|v| v.is_finite()).fold(0f64, f64::max).max(1e-12);
    for (i, row) in m.iter().enumerate() {
        write!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, x0 - 4.0, y0 + cell * (i as f64 + 0.6), esc(&labels[i])).unwrap();
        for (j, &v) in row.iter().enumerate() {
            let t = (v / max).clamp(0.0, 1.0);
            let (r, g, b) = (255.0 - 247.0 * t, 255.0 - 207.0 * t, 255.0 - 148.0 * t);
            write!(s, r##"<rect x="{:.1}" y="{:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({r:.0},{g:.0},{b:.0})" stroke="#fff"><title>{} vs {}: {v:.5} bits</title></rect>"##, x0 + cell * j as f64, y0 + cell * i as f64, esc(&labels[i]), esc(&labels[j])).unwrap();
            if cell >= 28.0 {
                write!(s, r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="8" fill="{}">{}</text>"##, x0 + cell * (j as f64 + 0.5), y0 + cell * (i as f64 + 0.6), if t > 0.5 { "#fff" } else { "#000" }, fmt_small(v)).unwrap();
            }
        }
    }
    write!(s, r#"<text x="{}" y="{:.1}">max {} bits/element</text>"#, x0 + cell * n as f64 + 10.0, y0 + 10.0, fmt_small(max)).unwrap();
    s.push_str("</svg>");
    s
}

fn fmt_small(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.0e}")
    }
}
