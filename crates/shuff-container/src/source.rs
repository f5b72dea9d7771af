//! Where a reader's bytes come from: a file read with positioned reads (no mmap, so a file that
//! another process truncates is an I/O error, not a SIGBUS), or bytes in memory.

use std::io;

/// Random-access bytes of known length.
pub trait Source: Sync {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; an error if the source ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl Source for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

impl<S: Source + ?Sized> Source for &S {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

/// An open file and the length it had when opened.
#[derive(Debug)]
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory"));
        }
        Ok(FileSource { len: meta.len(), file })
    }

    /// Reads from an already open file (e.g. standard input spooled to an anonymous temporary file).
    pub fn from_file(file: std::fs::File) -> io::Result<Self> {
        Ok(FileSource { len: file.metadata()?.len(), file })
    }

    /// The open file.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            let (mut buf, mut offset) = (buf, offset);
            while !buf.is_empty() {
                match std::os::windows::fs::FileExt::seek_read(&self.file, buf, offset) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end")),
                    Ok(n) => {
                        buf = &mut buf[n..];
                        offset += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    }
}

/// Byte slices read as one source, end to end: a safetensors file assembled from a header and
/// tensors already in memory, compressed without first copying them into one buffer.
pub struct Concat<'a> {
    parts: Vec<&'a [u8]>,
    /// Where each part starts.
    starts: Vec<u64>,
    len: u64,
}

impl<'a> Concat<'a> {
    /// The parts, in order.
    pub fn new(parts: Vec<&'a [u8]>) -> Self {
        let mut starts = Vec::with_capacity(parts.len());
        let mut len = 0u64;
        for p in &parts {
            starts.push(len);
            len += <[u8]>::len(p) as u64;
        }
        Concat { parts, starts, len }
    }
}

impl Source for Concat<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        let mut i = self.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        while !buf.is_empty() {
            let part = self.parts[i];
            let from = (offset - self.starts[i]) as usize;
            let n = (part.len() - from).min(buf.len());
            buf[..n].copy_from_slice(&part[from..from + n]);
            buf = &mut buf[n..];
            offset += n as u64;
            i += 1;
        }
        Ok(())
    }
}
