//! Python bindings: the `shuff._shuff` extension module. The Python package (`python/shuff`) wraps
//! it with numpy/torch conversions, the profiler hooks and the compressed collectives.
//!
//! Tensor data crosses as a C-contiguous byte buffer (the buffer protocol: a numpy `uint8` view
//! of an array or of a CPU tensor's memory), so nothing is copied on the way in, and coding runs
//! with the GIL released.

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shuff::stats::stream_histograms;
use shuff::{
    max_frame_len, Codebook, CodebookSet, DType, EncodeOptions, FrameInfo, Layout, Trainer,
};
use std::sync::Arc;

pyo3::create_exception!(_shuff, ShuffError, pyo3::exceptions::PyValueError, "An error from shuff's core (bad frame, wrong codebook, bad input), with its message.");

fn err(e: impl std::fmt::Display) -> PyErr {
    ShuffError::new_err(e.to_string())
}

/// Runs `f` with the GIL released; its error, or a panic (which pyo3 would raise as a
/// PanicException, a BaseException that `except Exception` does not catch), becomes ShuffError.
fn released<T: Send, E: std::fmt::Display + Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, E> + Send) -> PyResult<T> {
    match py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(err(e)),
        Err(panic) => {
            let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            Err(err(format!("internal error (please report it): {what}")))
        }
    }
}

/// A read-only view of a C-contiguous buffer of bytes, valid while `buf` is held.
struct Bytes {
    buf: PyBuffer<u8>,
}

impl Bytes {
    fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let buf = PyBuffer::<u8>::get(obj).map_err(|e| err(format!("expected a contiguous uint8 buffer (bytes, bytearray, numpy uint8 array): {e}")))?;
        if !buf.is_c_contiguous() {
            return Err(err("buffer is not C-contiguous"));
        }
        Ok(Bytes { buf })
    }

    fn slice(&self) -> &[u8] {
        // SAFETY: the buffer is C-contiguous (checked in `new`), `len_bytes` long at `buf_ptr`, and
        // stays valid while `self.buf` holds the exporter. As with numpy's own GIL-free kernels,
        // another Python thread writing to the array meanwhile would race; callers don't.
        unsafe { std::slice::from_raw_parts(self.buf.buf_ptr() as *const u8, self.buf.len_bytes()) }
    }

    /// The byte range it spans, to refuse an output that overlaps an input: coding would then
    /// read what it writes (and `&[u8]`/`&mut [u8]` aliasing is undefined behaviour).
    fn span(&self) -> std::ops::Range<usize> {
        let start = self.buf.buf_ptr() as usize;
        start..start + self.buf.len_bytes()
    }

    fn check_disjoint(&self, other: &Bytes) -> PyResult<()> {
        let (a, b) = (self.span(), other.span());
        if a.start < b.end && b.start < a.end {
            return Err(err("the output buffer overlaps the input; give a separate output"));
        }
        Ok(())
    }

    fn slice_mut(&mut self) -> PyResult<&mut [u8]> {
        if self.buf.readonly() {
            return Err(err("output buffer is read-only"));
        }
        // SAFETY: as in `slice`, and the exporter declared the buffer writable.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.buf.buf_ptr() as *mut u8, self.buf.len_bytes()) })
    }
}

/// The arguments of every decode into a caller's buffer: a private copy of the frame (another
/// thread writing it meanwhile cannot change what is decoded) and the output, which must not
/// overlap the frame.
fn decode_args(frame: &Bound<'_, PyAny>, out: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Bytes)> {
    let frame = Bytes::new(frame)?;
    let out = Bytes::new(out)?;
    out.check_disjoint(&frame)?;
    Ok((frame.slice().to_vec(), out))
}

/// One class's fixed code.
#[pyclass(name = "Codebook", module = "shuff", frozen)]
#[derive(Clone)]
struct PyCodebook {
    inner: Arc<Codebook>,
}

#[pymethods]
impl PyCodebook {
    /// Element type the codebook codes: bf16, f16, f32, f8e4m3, f8e5m2, u8.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }
    /// How elements become symbol streams: bytes, planes, exponent.
    #[getter]
    fn layout(&self) -> &'static str {
        self.inner.layout().name()
    }
    /// 64-bit fingerprint (frames carry its low 32 bits).
    #[getter]
    fn fingerprint(&self) -> u64 {
        self.inner.fingerprint().0
    }
    /// Code lengths per stream.
    fn lengths(&self) -> Vec<Vec<u8>> {
        self.inner.streams().iter().map(|s| s.lengths().to_vec()).collect()
    }
    /// The tables a device coder loads, one fixed-size record per stream (layout in
    /// `shuff::device`), for member 0 of this codebook's family (itself).
    fn device_tables<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let members = vec![&*self.inner; self.inner.streams().len()];
        PyBytes::new(py, &shuff::device::frame_tables(&members))
    }

    fn __repr__(&self) -> String {
        format!("Codebook({}/{}, fingerprint {:016x})", self.dtype(), self.layout(), self.fingerprint())
    }
}

/// A class's codebook family: the class code and variants (exponent-shifted members), one chosen
/// per stream and per message; frames name the members and the family's fingerprint.
#[pyclass(name = "Family", module = "shuff", frozen)]
struct PyFamily {
    inner: Arc<shuff::Family>,
}

#[pymethods]
impl PyFamily {
    /// `codebook` and its variants moved by each of `steps` exponent steps (default -1 and +1).
    #[staticmethod]
    #[pyo3(signature = (codebook, steps=vec![-1, 1]))]
    fn exponent_shift(codebook: &PyCodebook, steps: Vec<i32>) -> Self {
        PyFamily { inner: Arc::new(shuff::Family::exponent_shift(Arc::clone(&codebook.inner), &steps)) }
    }
    /// The members, member 0 (the class code) first.
    #[getter]
    fn members(&self) -> Vec<PyCodebook> {
        self.inner.members().iter().map(|m| PyCodebook { inner: Arc::clone(m) }).collect()
    }
    /// 64-bit fingerprint of the family (frames carry its low 32 bits).
    #[getter]
    fn fingerprint(&self) -> u64 {
        self.inner.fingerprint().0
    }
    /// Element type every member codes.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }
    /// Layout every member codes.
    #[getter]
    fn layout(&self) -> &'static str {
        self.inner.layout().name()
    }
    /// Per stream, the member that codes a 1/`stride` sample of `data` (tensor bytes) smallest
    /// (by default the encoder's own sample: `select_stride` of the element count).
    #[pyo3(signature = (data, stride=None))]
    fn choose(&self, py: Python<'_>, data: &Bound<'_, PyAny>, stride: Option<usize>) -> PyResult<Vec<u8>> {
        let bytes = Bytes::new(data)?;
        let fam = Arc::clone(&self.inner);
        let k = fam.layout().stream_count(fam.dtype());
        let m = released(py, || match stride {
            Some(stride) => fam.choose(bytes.slice(), stride),
            None => fam.encoder_choice(bytes.slice()),
        })?;
        Ok(m[..k].to_vec())
    }
    /// `choose` from per-stream symbol counts (one list of 256 per stream) counted elsewhere (the
    /// GPU coder counts its sample on the device).
    fn choose_from_counts(&self, counts: Vec<Vec<u64>>) -> PyResult<Vec<u8>> {
        let k = self.inner.layout().stream_count(self.inner.dtype());
        let hists = histograms_from_counts(&counts, k)?;
        Ok(self.inner.choose_from_histograms(&hists)[..k].to_vec())
    }
    /// How far this family has fallen behind data with per-stream symbol `counts` (one list of 256
    /// per stream, e.g. what a rank sent since its last check): (excess over the data's entropy in
    /// percentage points of compressibility, whether it passes `threshold_pp`), each stream under
    /// the member the encoder would pick (`shuff::select::DriftMonitor`).
    #[pyo3(signature = (counts, threshold_pp=1.0))]
    fn drift(&self, counts: Vec<Vec<u64>>, threshold_pp: f64) -> PyResult<(f64, bool)> {
        let k = self.inner.layout().stream_count(self.inner.dtype());
        let hists = histograms_from_counts(&counts, k)?;
        let r = shuff::select::DriftMonitor { threshold_pp, ..Default::default() }.check_counts(&self.inner, &hists);
        Ok((r.excess_pp, r.flagged))
    }
    /// The device tables (`shuff::device`) for a frame whose stream `s` is coded by `members[s]`.
    fn device_tables<'py>(&self, py: Python<'py>, members: Vec<u8>) -> PyResult<Bound<'py, PyBytes>> {
        let books = self.member_books(&members)?;
        Ok(PyBytes::new(py, &shuff::device::frame_tables(&books)))
    }
    /// The version-2 header of a frame of `nbytes` tensor bytes in `lanes` lanes whose streams are
    /// coded by `members`, with `checksum` (the CRC-32 of the tensor bytes) or none: what a device
    /// encoder writes before its chunks.
    #[pyo3(signature = (nbytes, lanes, members, checksum=None))]
    fn frame_header<'py>(&self, py: Python<'py>, nbytes: usize, lanes: usize, members: Vec<u8>, checksum: Option<u32>) -> PyResult<Bound<'py, PyBytes>> {
        self.member_books(&members)?;
        let mut m = [0u8; shuff::frame::MAX_STREAMS];
        m[..members.len()].copy_from_slice(&members);
        header_bytes(self.inner.dtype(), self.inner.layout(), self.inner.fingerprint(), nbytes, lanes, m, checksum).map(|h| PyBytes::new(py, &h))
    }
    fn __len__(&self) -> usize {
        self.inner.members().len()
    }
    fn __repr__(&self) -> String {
        format!("Family({}/{}, {} members, fingerprint {:016x})", self.inner.dtype(), self.inner.layout(), self.inner.members().len(), self.fingerprint())
    }
}

impl PyFamily {
    /// Each stream's member codebook, checking that `members` has one valid index per stream.
    fn member_books(&self, members: &[u8]) -> PyResult<Vec<&Codebook>> {
        let k = self.inner.layout().stream_count(self.inner.dtype());
        let all = self.inner.members();
        if members.len() != k || members.iter().any(|&m| usize::from(m) >= all.len()) {
            return Err(err(format!("give one member (0 to {}) per stream ({k}), not {members:?}", all.len() - 1)));
        }
        Ok(members.iter().map(|&m| &*all[usize::from(m)]).collect())
    }
}

/// The codebook family a coding function was given: a `Family`, or a `Codebook` (a family of one,
/// whose frames are that codebook's).
fn family_arg(book: &Bound<'_, PyAny>) -> PyResult<Arc<shuff::Family>> {
    if let Ok(f) = book.cast::<PyFamily>() {
        return Ok(Arc::clone(&f.get().inner));
    }
    if let Ok(c) = book.cast::<PyCodebook>() {
        return Ok(Arc::new(
            shuff::Family::new(vec![Arc::clone(&c.borrow().inner)]).map_err(err)?,
        ));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(
        "give a shuff.Codebook or a shuff.Family",
    ))
}

/// Explicit members from Python (one per stream of `family`), or `None` to let the encoder choose.
fn members_arg(
    family: &shuff::Family,
    members: Option<Vec<u8>>,
) -> PyResult<Option<[u8; shuff::frame::MAX_STREAMS]>> {
    let Some(m) = members else { return Ok(None) };
    let k = family.layout().stream_count(family.dtype());
    if m.len() != k {
        return Err(err(format!(
            "give one member per stream ({k}), not {}",
            m.len()
        )));
    }
    let mut a = [0u8; shuff::frame::MAX_STREAMS];
    a[..k].copy_from_slice(&m);
    Ok(Some(a))
}

/// A version-2 frame header, with `checksum` or without.
fn header_bytes(
    dtype: DType,
    layout: Layout,
    fingerprint: shuff::Fingerprint,
    nbytes: usize,
    lanes: usize,
    members: [u8; shuff::frame::MAX_STREAMS],
    checksum: Option<u32>,
) -> PyResult<Vec<u8>> {
    let elements = shuff::layout::element_count(dtype, nbytes).map_err(err)?;
    if !(1..=shuff::frame::MAX_LANES).contains(&lanes) {
        return Err(err(shuff::EncodeError::BadLaneCount(lanes)));
    }
    let info = FrameInfo {
        dtype,
        layout,
        elements: elements as u64,
        fingerprint: Some(fingerprint.0 as u32),
        checksum,
        lanes,
        members,
        version: shuff::frame::VERSION,
        header_len: 0,
    };
    Ok(info.to_bytes())
}

/// Which class a tensor or module belongs to: ordered (class, regex) rules, the first whose regex
/// matches the name wins (an empty regex matches every name) — the one policy `shuff train`,
/// `eval`, `compress` and the Profiler share, so overlapping selectors mean the same everywhere.
#[pyclass(name = "ClassSelector", module = "shuff", frozen)]
struct PyClassSelector {
    inner: shuff::ClassSelector,
}

#[pymethods]
impl PyClassSelector {
    /// `rules`: (class, regex) pairs in priority order. A bad regex raises ShuffError naming it.
    #[new]
    fn new(rules: Vec<(String, String)>) -> PyResult<Self> {
        Ok(PyClassSelector { inner: shuff::ClassSelector::new(&rules).map_err(err)? })
    }
    /// The class of `name`, or None when no rule selects it.
    fn class_of(&self, name: &str) -> Option<String> {
        self.inner.class_of(name).map(str::to_string)
    }
    /// The rules, in priority order.
    fn rules(&self) -> Vec<(String, String)> {
        self.inner.rules().iter().map(|(c, re)| (c.clone(), re.as_ref().map_or(String::new(), |r| r.as_str().to_string()))).collect()
    }
}

/// Named classes → codebooks.
#[pyclass(name = "CodebookSet", module = "shuff")]
struct PyCodebookSet {
    inner: CodebookSet,
}

#[pymethods]
impl PyCodebookSet {
    /// Loads a set from a JSON or binary (`SHCB`) file.
    #[staticmethod]
    fn load(path: std::path::PathBuf) -> PyResult<Self> {
        let bytes = std::fs::read(&path).map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        Self::from_bytes_or_json(&bytes)
    }
    /// Parses a set from JSON text or binary bytes.
    #[staticmethod]
    fn from_bytes_or_json(data: &[u8]) -> PyResult<Self> {
        Ok(PyCodebookSet { inner: CodebookSet::from_either(data).map_err(err)? })
    }
    /// The class a tensor called `name` belongs to under the selectors the set was trained with
    /// (its class order: first match wins), or None.
    fn class_of(&self, name: &str) -> PyResult<Option<String>> {
        let sel = shuff::ClassSelector::from_set(&self.inner).map_err(err)?;
        Ok(sel.class_of(name).map(str::to_string))
    }
    /// Writes the set, as binary if `path` ends in `.bin` or `.shcb`, else as JSON (atomically).
    fn save(&self, path: std::path::PathBuf) -> PyResult<()> {
        let binary = matches!(path.extension().and_then(|e| e.to_str()), Some("bin" | "shcb"));
        let bytes = if binary { self.inner.to_bytes() } else { self.inner.to_json().into_bytes() };
        shuff_container::AtomicFile::create(&path, true, &[]).and_then(|f| f.write_all_and_commit(&bytes)).map_err(err)
    }
    fn to_json(&self) -> String {
        self.inner.to_json()
    }
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }
    /// Class names, sorted.
    fn classes(&self) -> Vec<String> {
        self.inner.class_names().map(str::to_string).collect()
    }
    /// The codebook of `cls` (member 0 of its family).
    fn codebook(&self, cls: &str) -> PyResult<PyCodebook> {
        self.inner
            .codebook(cls)
            .map(|inner| PyCodebook { inner })
            .ok_or_else(|| self.no_class(cls))
    }
    /// The codebook family of `cls`: what encoders of the class use (`shuff.encode` with a set
    /// and a class name uses it).
    fn family(&self, cls: &str) -> PyResult<PyFamily> {
        self.inner
            .family(cls)
            .map(|inner| PyFamily { inner })
            .ok_or_else(|| self.no_class(cls))
    }
    /// What made each member of `cls`'s family (`class`, `shift -1`, `cluster 2`, …; empty for a
    /// family of one).
    fn members_made_by(&self, cls: &str) -> PyResult<Vec<String>> {
        self.inner
            .get(cls)
            .map(|c| c.provenance.members.clone())
            .ok_or_else(|| self.no_class(cls))
    }
    /// This set with every class of `newer` put in (replacing the class of the same name, whose
    /// version is bumped if its codes changed): a refresh that learned only some classes keeps the
    /// others.
    fn updated_with(&self, newer: &PyCodebookSet) -> PyCodebookSet {
        let mut set = self.inner.clone();
        for (name, c) in newer.inner.classes() {
            set.insert_family(name, (*c.family).clone(), c.provenance.clone());
        }
        PyCodebookSet { inner: set }
    }
    /// Fingerprint of the whole set (FNV-1a over class names and family fingerprints): equal
    /// on two processes iff they code every class identically.
    #[getter]
    fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (name, c) in self.inner.classes() {
            for b in name
                .bytes()
                .chain([0])
                .chain(c.family.fingerprint().0.to_le_bytes())
            {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        h
    }
    fn __len__(&self) -> usize {
        self.inner.len()
    }
    fn __repr__(&self) -> String {
        format!("CodebookSet({:?}, classes {:?})", self.inner.name, self.classes())
    }
}

impl PyCodebookSet {
    fn no_class(&self, cls: &str) -> PyErr {
        err(format!(
            "class `{cls}` is not in the codebook set (classes: {})",
            self.classes().join(", ")
        ))
    }
}

/// Accumulates per-batch histograms per class (counted in Rust on the tensor's memory) and builds
/// codebooks from the average of the per-batch distributions, as `shuff train` does.
#[pyclass(name = "Trainer", module = "shuff", subclass)]
struct PyTrainer {
    inner: Trainer,
}

#[pymethods]
impl PyTrainer {
    /// `family`: as `shuff train --family` — `auto` (exponent-shifted and clustered members where
    /// they pay on held-out messages), `shift`, `cluster` or `none` (the class code alone).
    #[new]
    #[pyo3(signature = (max_len=None, family="auto"))]
    fn new(max_len: Option<u32>, family: &str) -> PyResult<Self> {
        let family = shuff::FamilyOptions::named(family).map_err(err)?;
        // 0: each layout's default, as `shuff train` (the library's one rule).
        Ok(PyTrainer {
            inner: Trainer::new(max_len.unwrap_or(0)).with_family(family),
        })
    }
    /// Counts `data` (a tensor's bytes) into class `cls`, batch `batch`.
    #[pyo3(signature = (cls, dtype, layout, batch, data, source=""))]
    #[allow(clippy::too_many_arguments)] // the Python signature, plus `self` and the GIL token
    fn add(&mut self, py: Python<'_>, cls: &str, dtype: &str, layout: &str, batch: u64, data: &Bound<'_, PyAny>, source: &str) -> PyResult<()> {
        let (dtype, layout): (DType, Layout) = (dtype.parse().map_err(err)?, layout.parse().map_err(err)?);
        let bytes = Bytes::new(data)?;
        let hists = released(py, || stream_histograms(dtype, layout, bytes.slice()))?;
        self.inner.add_histograms(cls, dtype, layout, batch, &hists, source).map_err(err)
    }
    /// Adds histograms already counted (by [`stream_histograms`], possibly summed over ranks)
    /// as class `cls`, batch `batch`: one list of 256 counts per stream of the layout.
    #[pyo3(signature = (cls, dtype, layout, batch, counts, source=""))]
    fn add_counts(&mut self, cls: &str, dtype: &str, layout: &str, batch: u64, counts: Vec<Vec<u64>>, source: &str) -> PyResult<()> {
        let (dtype, layout): (DType, Layout) = (dtype.parse().map_err(err)?, layout.parse().map_err(err)?);
        let hists = histograms_from_counts(&counts, layout.stream_count(dtype))?;
        self.inner.add_histograms(cls, dtype, layout, batch, &hists, source).map_err(err)
    }
    /// Class names seen so far.
    fn classes(&self) -> Vec<String> {
        self.inner.class_names().map(str::to_string).collect()
    }
    /// Builds one codebook family per class into a set named `name`. Maximum code length: the one
    /// given to the constructor, else each layout's default (12 for bytes, 16 for planes/exponent).
    fn build(&self, name: &str) -> PyResult<PyCodebookSet> {
        Ok(PyCodebookSet { inner: self.inner.build(name).map_err(err)? })
    }
}

/// `streams` lists of 256 counts, from Python, as histograms (a wrong length is an error, not a
/// panic).
fn histograms_from_counts(counts: &[Vec<u64>], streams: usize) -> PyResult<Vec<shuff::stats::Histogram>> {
    if counts.len() != streams {
        return Err(err(format!("give {streams} lists of 256 counts (one per stream), not {}", counts.len())));
    }
    counts
        .iter()
        .enumerate()
        .map(|(s, c)| {
            let counts: [u64; 256] = c.as_slice().try_into().map_err(|_| err(format!("stream {s}: {} counts, expected 256", c.len())))?;
            Ok(shuff::stats::Histogram { counts })
        })
        .collect()
}

/// Symbol counts of `data` (tensor bytes of `dtype`) per stream of `layout`: what
/// `Trainer.add` counts, for callers that sum counts before training (e.g. over ranks).
#[pyfunction(name = "stream_histograms")]
fn py_stream_histograms(py: Python<'_>, data: &Bound<'_, PyAny>, dtype: &str, layout: &str) -> PyResult<Vec<Vec<u64>>> {
    let (dtype, layout): (DType, Layout) = (dtype.parse().map_err(err)?, layout.parse().map_err(err)?);
    let bytes = Bytes::new(data)?;
    let hists = released(py, || stream_histograms(dtype, layout, bytes.slice()))?;
    Ok(hists.iter().map(|h| h.counts.to_vec()).collect())
}

/// Encodes `data` (the tensor's bytes) with `codebook` (a Codebook or a Family) into a frame (GIL
/// released). A family's members are `members` (one per stream) or, without, those its `choose`
/// picks from a sample of `data`.
#[pyfunction]
#[pyo3(signature = (data, codebook, checksum=false, lanes=None, members=None))]
fn encode<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    codebook: &Bound<'py, PyAny>,
    checksum: bool,
    lanes: Option<usize>,
    members: Option<Vec<u8>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = Bytes::new(data)?;
    let family = family_arg(codebook)?;
    let members = members_arg(&family, members)?;
    let frame = released(py, || {
        family.encode(
            bytes.slice(),
            EncodeOptions {
                checksum,
                parallel: true,
                lanes,
            },
            members,
        )
    })?;
    Ok(PyBytes::new(py, &frame))
}

/// Encodes `data` with `codebook` (a Codebook or a Family) into the writable buffer `out` (at least
/// `max_frame_size` bytes) and returns the frame's length: no allocation, no copy of the frame
/// (GIL released).
#[pyfunction]
#[pyo3(signature = (data, codebook, out, checksum=false, lanes=None, members=None))]
#[allow(clippy::too_many_arguments)] // the Python signature, plus the GIL token
fn encode_into_buffer(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    codebook: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    checksum: bool,
    lanes: Option<usize>,
    members: Option<Vec<u8>>,
) -> PyResult<usize> {
    let bytes = Bytes::new(data)?;
    let mut out = Bytes::new(out)?;
    out.check_disjoint(&bytes)?;
    let family = family_arg(codebook)?;
    let members = members_arg(&family, members)?;
    let dst = out.slice_mut()?;
    released(py, || {
        family.encode_into(
            bytes.slice(),
            dst,
            EncodeOptions {
                checksum,
                parallel: true,
                lanes,
            },
            members,
        )
    })
}

/// Decodes `frame` with `codebook` (a Codebook or a Family) into `out`, a writable buffer of exactly
/// the decoded size (GIL released). Fails with ShuffError on a damaged frame or a frame made with
/// another codebook.
#[pyfunction]
fn decode_into_buffer(
    py: Python<'_>,
    frame: &Bound<'_, PyAny>,
    codebook: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let (frame, mut out) = decode_args(frame, out)?;
    let family = family_arg(codebook)?;
    let dst = out.slice_mut()?;
    released(py, || family.decode_into(&frame, dst))
}

/// The header of a frame: (dtype, layout, elements, decoded bytes, fingerprint32 or None).
#[pyfunction]
fn frame_info(frame: &Bound<'_, PyAny>) -> PyResult<(String, String, u64, usize, Option<u32>)> {
    let frame = Bytes::new(frame)?;
    let info = FrameInfo::parse(frame.slice()).map_err(err)?;
    Ok((info.dtype.name().into(), info.layout.name().into(), info.elements, info.decoded_len().map_err(err)?, info.fingerprint))
}

/// Everything a frame's header says, for device decoders: dtype, layout, elements, decoded bytes,
/// fingerprint32 (None: three-stage), checksum (or None), lanes, members (one per stream),
/// format version, header length.
#[pyfunction]
fn frame_header_info<'py>(frame: &Bound<'py, PyAny>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let py = frame.py();
    let frame = Bytes::new(frame)?;
    let info = FrameInfo::parse(frame.slice()).map_err(err)?;
    let d = pyo3::types::PyDict::new(py);
    d.set_item("dtype", info.dtype.name())?;
    d.set_item("layout", info.layout.name())?;
    d.set_item("elements", info.elements)?;
    d.set_item("decoded_len", info.decoded_len().map_err(err)?)?;
    d.set_item("fingerprint", info.fingerprint)?;
    d.set_item("checksum", info.checksum)?;
    d.set_item("lanes", info.lanes)?;
    d.set_item("members", info.members[..info.layout.stream_count(info.dtype)].to_vec())?;
    d.set_item("version", info.version)?;
    d.set_item("header_len", info.header_len)?;
    Ok(d)
}

/// The version-2 header of a frame of `nbytes` tensor bytes coded by `codebook` in `lanes` lanes,
/// with `checksum` (the CRC-32 of the tensor bytes) or none: what a device encoder writes before
/// its chunks.
#[pyfunction]
#[pyo3(signature = (codebook, nbytes, lanes, checksum=None))]
fn frame_header<'py>(py: Python<'py>, codebook: &PyCodebook, nbytes: usize, lanes: usize, checksum: Option<u32>) -> PyResult<Bound<'py, PyBytes>> {
    let book = &codebook.inner;
    let h = header_bytes(book.dtype(), book.layout(), book.fingerprint(), nbytes, lanes, [0; shuff::frame::MAX_STREAMS], checksum)?;
    Ok(PyBytes::new(py, &h))
}

/// Bits of `data` under: the Shannon bound, its own per-message Huffman code (payload only, at the
/// codebook's maximum length), and `codebook` (a Codebook, or a Family with its members chosen as
/// `encode` chooses them for one frame) — the quantities `shuff eval` reports.
#[pyfunction]
fn measure(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    codebook: &Bound<'_, PyAny>,
) -> PyResult<(u64, f64, u64, u64)> {
    let bytes = Bytes::new(data)?;
    let family = family_arg(codebook)?;
    let max_len = shuff::measure::reference_max_len(&family.members()[0], None);
    let s = released(py, || {
        shuff::measure::measure(&family, bytes.slice(), max_len, usize::MAX)
    })?;
    Ok((
        s.original_bits,
        s.shannon_bits,
        s.huffman_bits,
        s.fixed_bits,
    ))
}

/// The stride of the sample from which the encoder picks a family's members for a message of
/// `elements` elements (`shuff::measure::select_stride`; the GPU coder samples with it too).
#[pyfunction]
fn select_stride(elements: usize) -> usize {
    shuff::measure::select_stride(elements)
}

/// Worst-case frame size for `nbytes` of tensor data.
#[pyfunction]
fn max_frame_size(dtype: &str, layout: &str, nbytes: usize) -> PyResult<usize> {
    let n = max_frame_len(dtype.parse().map_err(err)?, layout.parse().map_err(err)?, nbytes);
    if n > isize::MAX as usize {
        return Err(err(format!("a message of {nbytes} bytes is larger than any buffer can be")));
    }
    Ok(n)
}

/// Compresses tensors into a `.shuff` container file at `path` (written atomically, replacing an
/// existing file, as safetensors' `save_file` does): `tensors` is a list of (name, safetensors
/// dtype such as "BF16", shape, C-contiguous byte buffer). With `book`, tensors go to its classes
/// by their selectors and the set is embedded; without, classes are trained from the tensors
/// themselves (the policy of `shuff compress`). GIL released; the buffers are read in place.
#[pyfunction]
#[pyo3(signature = (tensors, path, book=None, metadata=None))]
fn save_file(
    py: Python<'_>,
    tensors: Vec<(String, String, Vec<usize>, Bound<'_, PyAny>)>,
    path: std::path::PathBuf,
    book: Option<&PyCodebookSet>,
    metadata: Option<std::collections::BTreeMap<String, String>>,
) -> PyResult<()> {
    use shuff_container::{compress, source::Concat, tensors::build_header, AtomicFile, Coding};
    let buffers: Vec<Bytes> = tensors.iter().map(|(_, _, _, b)| Bytes::new(b)).collect::<PyResult<_>>()?;
    let described: Vec<(&str, &str, &[usize], u64)> =
        tensors.iter().zip(&buffers).map(|((n, d, s, _), b)| (n.as_str(), d.as_str(), s.as_slice(), b.slice().len() as u64)).collect();
    let header = build_header(&described, metadata.as_ref()).map_err(err)?;
    let name = path.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let set = book.map(|b| &b.inner);
    released(py, || {
        let mut parts = vec![header.as_slice()];
        parts.extend(buffers.iter().map(Bytes::slice));
        let source = Concat::new(parts);
        let coding = match set {
            Some(set) => Coding::Set(set),
            None => Coding::Trained { name: &name, families: true },
        };
        let out = AtomicFile::create(&path, true, &[])?;
        let (out, _) = compress(&source, coding, out, &|_| ())?;
        out.commit()
    })
}

/// An open `.shuff` container file: its tensors' names, dtypes and shapes, and each tensor's bytes
/// read on demand (only that tensor's segments are read).
#[pyclass(name = "ContainerFile", module = "shuff", frozen)]
struct PyContainerFile {
    inner: shuff_container::Container<shuff_container::source::FileSource>,
}

#[pymethods]
impl PyContainerFile {
    /// Opens and checks `path`; `book` decodes files written without an embedded set.
    #[new]
    #[pyo3(signature = (path, book=None))]
    fn open(py: Python<'_>, path: std::path::PathBuf, book: Option<&PyCodebookSet>) -> PyResult<Self> {
        let source = shuff_container::source::FileSource::open(&path).map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        let mut inner = released(py, || shuff_container::Container::open(source))?;
        if let Some(b) = book {
            inner = inner.with_codebooks(&b.inner);
        }
        Ok(PyContainerFile { inner })
    }

    /// Per tensor, in file order: (name, safetensors dtype, shape, byte length).
    fn tensors(&self) -> Vec<(String, String, Vec<usize>, u64)> {
        self.inner.tensors().iter().map(|t| (t.name.clone(), format!("{:?}", t.dtype), t.shape.clone(), t.len())).collect()
    }

    /// The stored safetensors header's JSON (for `__metadata__`).
    fn header_json(&self) -> PyResult<String> {
        let h = self.inner.safetensors_header();
        Ok(String::from_utf8_lossy(&h[8..]).into_owned())
    }

    /// Decodes tensor `name` into `out`, a writable C-contiguous buffer of exactly its size (GIL
    /// released).
    fn read_into(&self, py: Python<'_>, name: &str, out: &Bound<'_, PyAny>) -> PyResult<()> {
        let t = self.inner.tensors().iter().find(|t| t.name == name).ok_or_else(|| err(format!("no tensor named `{name}` in the file")))?;
        let mut out = Bytes::new(out)?;
        let dst = out.slice_mut()?;
        if dst.len() as u64 != t.len() {
            return Err(err(format!("tensor `{name}` has {} bytes, the output {}", t.len(), dst.len())));
        }
        let start = t.start;
        released(py, || self.inner.read_range_into(start, dst))
    }
}

#[pymodule]
fn _shuff(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ShuffError", m.py().get_type::<ShuffError>())?;
    m.add_class::<PyCodebook>()?;
    m.add_class::<PyCodebookSet>()?;
    m.add_class::<PyClassSelector>()?;
    m.add_class::<PyTrainer>()?;
    m.add_class::<PyFamily>()?;
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    m.add_function(wrap_pyfunction!(decode_into_buffer, m)?)?;
    m.add_function(wrap_pyfunction!(encode_into_buffer, m)?)?;
    m.add_function(wrap_pyfunction!(frame_info, m)?)?;
    m.add_function(wrap_pyfunction!(frame_header_info, m)?)?;
    m.add_function(wrap_pyfunction!(frame_header, m)?)?;
    m.add_function(wrap_pyfunction!(measure, m)?)?;
    m.add_function(wrap_pyfunction!(max_frame_size, m)?)?;
    m.add_function(wrap_pyfunction!(select_stride, m)?)?;
    m.add_function(wrap_pyfunction!(py_stream_histograms, m)?)?;
    m.add_function(wrap_pyfunction!(save_file, m)?)?;
    m.add_class::<PyContainerFile>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CHUNK_BYTES", shuff::frame::CHUNK_BYTES)?;
    m.add("MAX_HEADER_BYTES", shuff::frame::MAX_HEADER_BYTES)?;
    Ok(())
}
