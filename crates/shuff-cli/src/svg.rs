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

/// The legend: a colour swatch per series, or (`markers`) the series' marker shape.
fn legend(s: &mut String, names: &[&str], markers: bool) {
    for (i, n) in names.iter().enumerate() {
        let y = T + 14.0 * i as f64;
        if markers {
            marker(s, i, W - R + 15.0, y + 5.0, COLORS[i % 8], n);
        } else {
            write!(s, r#"<rect x="{}" y="{y}" width="10" height="10" fill="{}"/>"#, W - R + 10.0, COLORS[i % 8]).unwrap();
        }
        write!(s, r#"<text x="{}" y="{}">{}</text>"#, W - R + 24.0, y + 9.0, esc(n)).unwrap();
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
    legend(&mut s, &series.iter().map(|(n, _)| *n).collect::<Vec<_>>(), false);
    s.push_str("</svg>");
    s
}

/// How [`lines`] draws a series.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Style {
    /// Points joined by lines, each series with its own marker shape and dash pattern and nudged
    /// sideways a little, so that series with equal values stay visible side by side.
    Lines,
    /// A step over each integer x (a histogram outline): a step only where the series has a value,
    /// so that nothing is drawn across x values that never occur.
    Steps,
}

/// Marker shapes: series that coincide are told apart by shape as well as colour.
fn marker(s: &mut String, i: usize, cx: f64, cy: f64, color: &str, tip: &str) {
    let r = 3.0;
    let (tag, shape) = match i % SHAPES {
        0 => ("circle", format!(r#"cx="{cx:.1}" cy="{cy:.1}" r="{r}""#)),
        1 => ("rect", format!(r#"x="{:.1}" y="{:.1}" width="{}" height="{}""#, cx - r, cy - r, 2.0 * r, 2.0 * r)),
        2 => ("path", format!(r#"d="M{cx:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z""#, cy - r - 0.5, cx + r + 0.5, cy + r, cx - r - 0.5, cy + r)),
        3 => ("path", format!(r#"d="M{cx:.1},{:.1}L{:.1},{cy:.1}L{cx:.1},{:.1}L{:.1},{cy:.1}Z""#, cy - r - 0.5, cx + r + 0.5, cy + r + 0.5, cx - r - 0.5)),
        4 => ("path", format!(r#"d="M{cx:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z""#, cy + r + 0.5, cx + r + 0.5, cy - r, cx - r - 0.5, cy - r)),
        _ => ("path", format!(r#"d="M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}" stroke="{color}" stroke-width="2""#, cx - r, cy - r, cx + r, cy + r, cx - r, cy + r, cx + r, cy - r)),
    };
    write!(s, r#"<{tag} {shape} fill="{color}"><title>{}</title></{tag}>"#, esc(tip)).unwrap();
}

/// Marker shapes [`marker`] cycles through: circle, square, triangle up, diamond, triangle down, cross.
const SHAPES: usize = 6;

/// Dash patterns: series 0–7 solid, the next eight (colours repeat) dashed, and so on.
const DASHES: [&str; 4] = ["", "6 3", "2 2", "8 3 2 3"];

/// Chart of (x, y) series; `log_y` plots log10(y) (values ≤ 0 are skipped).
pub fn lines(title: &str, x_label: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)], log_y: bool, style: Style) -> String {
    let mut s = open(title, H);
    let tf = |v: f64| if log_y { v.log10() } else { v };
    let shown = |v: f64| v.is_finite() && (!log_y || v > 0.0);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).filter(|&(_, v)| shown(v)).collect();
    if pts.is_empty() {
        s.push_str("</svg>");
        return s;
    }
    let (mut xlo, mut xhi) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), &(x, _)| (a.min(x), b.max(x)));
    if style == Style::Steps {
        (xlo, xhi) = (xlo - 0.5, xhi + 0.5);
    }
    let (ylo, yhi) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), &(_, v)| (a.min(tf(v)), b.max(tf(v))));
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
    let n = series.len();
    for (i, (name, p)) in series.iter().enumerate() {
        let color = COLORS[i % 8];
        let dash = DASHES[(i / 8) % DASHES.len()];
        let dash = if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
        let p: Vec<(f64, f64)> = p.iter().copied().filter(|&(_, v)| shown(v)).collect();
        match style {
            Style::Steps => {
                // One sub-path per run of consecutive x values: a missing x breaks the outline.
                let mut d = String::new();
                let mut prev: Option<f64> = None;
                for &(a, b) in &p {
                    let (x0, x1, py) = (x(a - 0.5), x(a + 0.5), y(tf(b)));
                    if prev == Some(a - 1.0) {
                        write!(d, "L{x0:.1},{py:.1}H{x1:.1}").unwrap();
                    } else {
                        write!(d, "M{x0:.1},{py:.1}H{x1:.1}").unwrap();
                    }
                    prev = Some(a);
                }
                write!(s, r#"<path fill="none" stroke="{color}" stroke-width="1.2"{dash} d="{d}"><title>{}</title></path>"#, esc(name)).unwrap();
            }
            Style::Lines => {
                // Series nudged apart, up to ±2.5% of the plot's width (±11 px): series with equal
                // values show side by side instead of hiding one another.
                let nudge = if n > 1 { (i as f64 - (n - 1) as f64 / 2.0) / (n - 1) as f64 * 0.05 * (W - L - R) } else { 0.0 };
                let path: Vec<String> = p.iter().map(|&(a, b)| format!("{:.1},{:.1}", x(a) + nudge, y(tf(b)))).collect();
                write!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{}"/>"#, path.join(" ")).unwrap();
                if p.len() <= 20 {
                    for &(a, b) in &p {
                        marker(&mut s, i, x(a) + nudge, y(tf(b)), color, &format!("{name}: {a}: {b:.4}"));
                    }
                }
            }
        }
    }
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    legend(&mut s, &names, style == Style::Lines);
    s.push_str("</svg>");
    s
}

/// Rows and columns a heatmap shows at most (the report's size must not grow with the square of a
/// file's layer count).
pub const MAX_HEATMAP: usize = 48;

/// Heatmap of a square matrix (e.g. KL divergences), white (0) to dark blue (max), values printed
/// where the cells are large enough to read them; the first [`MAX_HEATMAP`] rows and columns.
/// Rows are labelled on the left, columns above (rotated), with room sized to the longest label.
pub fn heatmap(title: &str, labels: &[String], m: &[Vec<f64>]) -> String {
    let title = if labels.len() > MAX_HEATMAP { format!("{title}, first {MAX_HEATMAP} of {}", labels.len()) } else { title.to_string() };
    let (title, labels) = (title.as_str(), &labels[..labels.len().min(MAX_HEATMAP)]);
    let m: Vec<&[f64]> = m.iter().take(MAX_HEATMAP).map(|r| &r[..r.len().min(MAX_HEATMAP)]).collect();
    let n = labels.len().max(1);
    // Labels are cut to 32 characters; ~6.2 px per character of an 11 px sans-serif font.
    let short: Vec<String> = labels.iter().map(|l| if l.chars().count() > 32 { format!("{}…", l.chars().take(31).collect::<String>()) } else { l.clone() }).collect();
    let widest = short.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f64 * 6.2;
    let x0 = (widest + 10.0).clamp(40.0, 220.0);
    let y0 = 34.0 + (widest * 0.71 + 8.0).clamp(16.0, 160.0);
    let cell = ((W - x0 - 10.0) / n as f64).min(52.0);
    let height = y0 + cell * n as f64 + 24.0;
    let mut s = open(title, height.max(120.0));
    let max = m.iter().flat_map(|r| r.iter()).copied().filter(|v| v.is_finite()).fold(0f64, f64::max).max(1e-12);
    let font = (cell * 0.3).clamp(9.0, 12.0);
    for (j, label) in short.iter().enumerate() {
        let cx = x0 + cell * (j as f64 + 0.5);
        write!(s, r#"<text transform="translate({cx:.1},{:.1}) rotate(-45)">{}</text>"#, y0 - 4.0, esc(label)).unwrap();
    }
    for (i, row) in m.iter().enumerate() {
        write!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, x0 - 4.0, y0 + cell * (i as f64 + 0.5) + 4.0, esc(&short[i])).unwrap();
        for (j, &v) in row.iter().enumerate() {
            let t = (v / max).clamp(0.0, 1.0);
            let (r, g, b) = (255.0 - 247.0 * t, 255.0 - 207.0 * t, 255.0 - 148.0 * t);
            write!(s, r##"<rect x="{:.1}" y="{:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({r:.0},{g:.0},{b:.0})" stroke="#fff"><title>{} vs {}: {v:.5} bits</title></rect>"##, x0 + cell * j as f64, y0 + cell * i as f64, esc(&labels[i]), esc(&labels[j])).unwrap();
            if cell >= 30.0 {
                write!(s, r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="{font:.0}" fill="{}">{}</text>"##, x0 + cell * (j as f64 + 0.5), y0 + cell * (i as f64 + 0.5) + font * 0.35, if t > 0.5 { "#fff" } else { "#000" }, fmt_small(v)).unwrap();
            }
        }
    }
    write!(s, r#"<text x="{:.1}" y="{:.1}">max {} bits/element</text>"#, x0, y0 + cell * n as f64 + 16.0, fmt_small(max)).unwrap();
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
