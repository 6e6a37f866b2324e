//! File contents: where they come from, and copying exactly the size the
//! tar header promised.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::OciError;
use super::error::cut;
use super::layer::{FileMode, LayerOptions, stat_error};
use super::path::LayerPath;
use super::tarball::{EntryKind, append_entry};

/// Where a file entry's bytes come from.
pub(crate) enum Source<'a> {
    Bytes(Vec<u8>),
    Reader {
        reader: Box<dyn Read + 'a>,
        size: u64,
    },
    Path {
        path: PathBuf,
        size: u64,
    },
}

/// Appends the file entry at `path`, reading `source` once. A reader that
/// yields another size than declared is `size_mismatch`; a file on disk
/// that vanished or changed size since it was added is `source_changed`.
pub(crate) fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    opts: &LayerOptions,
    path: &LayerPath,
    source: Source<'_>,
    mode: FileMode,
) -> Result<(), OciError> {
    let executable = mode == FileMode::Executable;
    let name = path.tar_name(false);
    let (reader, size, disk): (Box<dyn Read + '_>, u64, Option<PathBuf>) = match source {
        Source::Bytes(b) => {
            let size = b.len() as u64;
            (Box::new(io::Cursor::new(b)), size, None)
        }
        Source::Reader { reader, size } => (reader, size, None),
        Source::Path { path: p, size } => {
            let file = File::open(&p).map_err(|e| stat_error(&p, e))?;
            let now = file.metadata().map_err(|e| stat_error(&p, e))?.len();
            if now != size {
                return Err(changed(&p, size, "its size changed since it was added"));
            }
            (Box::new(file), size, Some(p))
        }
    };
    let mut exact = Exact {
        inner: reader,
        remaining: size,
        failure: None,
    };
    let kind = EntryKind::File { size, executable };
    match append_entry(tar, opts, &name, kind, &mut exact) {
        Ok(()) => Ok(()),
        Err(e) => Err(match (exact.failure, disk) {
            (Some(reason), Some(p)) => {
                let why = if reason == SHORT {
                    "it shrank while being read"
                } else {
                    "it grew while being read"
                };
                changed(&p, size, why)
            }
            (Some(reason), None) => OciError::SizeMismatch {
                path: cut(&path.display(), 300),
                declared: size,
                reason,
            },
            (None, Some(p)) => OciError::io(format!("reading {}", p.display()), e),
            (None, None) => OciError::io(format!("writing the layer entry {}", path.display()), e),
        }),
    }
}

fn changed(path: &Path, size: u64, reason: &str) -> OciError {
    OciError::SourceChanged {
        path: path.to_string_lossy().into_owned(),
        reason: format!("{reason} (expected {size} bytes)"),
    }
}

const SHORT: &str = "ended early";
const LONG: &str = "yielded more";

/// Yields exactly `remaining` bytes of `inner`, or fails and records why:
/// the tar header has promised that many.
struct Exact<R> {
    inner: R,
    remaining: u64,
    failure: Option<&'static str>,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.failure = Some(LONG);
                    Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "longer than declared",
                    ))
                }
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 && max > 0 {
            self.failure = Some(SHORT);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "shorter than declared",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
