//! Writing an output file so that it either appears whole under its name or not at all: a
//! temporary file with an unpredictable name, created with `O_EXCL` in the destination's directory
//! (so it is never a symlink planted by someone else, and the rename stays on one file system),
//! fsynced, then renamed over the destination. Dropped without [`AtomicFile::commit`] — an error,
//! a full disk, a panic — the temporary file is removed.

use crate::ContainerError;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The output's write buffer: it gathers the small writes (segment headers, the index), while a
/// write at least this large goes straight to the file. Segments are up to 16 MiB, most of a
/// checkpoint's frames a few hundred KiB to 1 MiB: a 1 MiB buffer copied nearly every byte of the
/// output once more (4.7% of `compress`'s CPU time, beside the lane staging).
const OUTPUT_BUFFER_BYTES: usize = 64 << 10;

/// An output file being written.
pub struct AtomicFile {
    tmp: BufWriter<tempfile::NamedTempFile>,
    dest: PathBuf,
    overwrite: bool,
}

/// Whether `a` and `b` name the same existing file (hard links and symlinks included).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

impl AtomicFile {
    /// Starts writing `dest`. Refuses if `dest` is one of `inputs` (whatever `overwrite` says), or
    /// if it exists and `overwrite` is false.
    pub fn create(dest: &Path, overwrite: bool, inputs: &[&Path]) -> Result<Self, ContainerError> {
        if let Some(input) = inputs.iter().find(|i| same_file(i, dest)) {
            return Err(ContainerError::Io {
                what: format!("writing {}", dest.display()),
                error: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("it is the input {}; choose another output", input.display())),
            });
        }
        if !overwrite && dest.symlink_metadata().is_ok() {
            return Err(ContainerError::Io {
                what: format!("writing {}", dest.display()),
                error: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the file exists (use -f to overwrite it)"),
            });
        }
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // Temporary files are private (0600); the output gets what any new file gets (0666
        // less the umask), as with `cp` or zstd.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let tmp = builder
            .tempfile_in(dir)
            .map_err(ContainerError::io(format!("creating a temporary file in {}", dir.display())))?;
        Ok(AtomicFile { tmp: BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, tmp), dest: dest.to_path_buf(), overwrite })
    }

    /// Flushes, fsyncs and renames the file into place.
    pub fn commit(self) -> Result<(), ContainerError> {
        let what = format!("writing {}", self.dest.display());
        let tmp = self.tmp.into_inner().map_err(|e| ContainerError::Io { what: what.clone(), error: e.into_error() })?;
        tmp.as_file().sync_all().map_err(ContainerError::io(what.clone()))?;
        let persisted = if self.overwrite { tmp.persist(&self.dest) } else { tmp.persist_noclobber(&self.dest) };
        persisted.map_err(|e| ContainerError::Io { what, error: e.error })?;
        Ok(())
    }

    /// Writes all of `bytes` and commits.
    pub fn write_all_and_commit(mut self, bytes: &[u8]) -> Result<(), ContainerError> {
        self.write_all(bytes).map_err(ContainerError::io(format!("writing {}", self.dest.display())))?;
        self.commit()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tmp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tmp.flush()
    }
}
