//! Layers: deterministic tars, gzipped with a fixed header, hashed as they
//! stream out.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};

use super::OciError;
use super::blob::{BlobSource, Layer, LayerBlob};
use super::error::cut;
use super::path::{LayerPath, check_link_target};
use super::tarball::{EntryKind, MAX_USTAR_SIZE, append_entry};
use crate::HashingWriter;

/// The OS byte of the gzip header: 255, "unknown", as Go's `compress/gzip`
/// (and so `docker save`) writes it, whatever the host.
const GZIP_OS_UNKNOWN: u8 = 255;

/// How every entry of a layer is stamped, and how the layer is compressed.
///
/// The defaults are the ones to keep for reproducible images: mtime 0
/// (1970-01-01), owner 0:0 (root: the application, running as another user,
/// cannot change the files), gzip level 6. Changing any of them changes the
/// layer's digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    /// The mtime of every entry, in seconds since the epoch (a
    /// `SOURCE_DATE_EPOCH`). At most `0o77777777777`.
    pub mtime: u64,
    /// The uid of every entry. At most `0o7777777` (2097151).
    pub uid: u64,
    /// The gid of every entry. At most `0o7777777`.
    pub gid: u64,
    /// The gzip level, 0 (stored) to 9 (best). Part of the layer's identity:
    /// the digest of the gzip blob depends on it (the `diff_id` does not).
    pub compression_level: u32,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self {
            mtime: 0,
            uid: 0,
            gid: 0,
            compression_level: 6,
        }
    }
}

impl LayerOptions {
    fn validate(&self) -> Result<(), OciError> {
        const MAX_ID: u64 = 0o7_777_777;
        if self.mtime > MAX_USTAR_SIZE {
            return Err(OciError::InvalidLayerOptions(
                "mtime must be at most 0o77777777777",
            ));
        }
        if self.uid > MAX_ID || self.gid > MAX_ID {
            return Err(OciError::InvalidLayerOptions(
                "uid and gid must be at most 2097151",
            ));
        }
        if self.compression_level > 9 {
            return Err(OciError::InvalidLayerOptions(
                "compression_level must be from 0 to 9",
            ));
        }
        Ok(())
    }
}

/// The mode a regular file gets in the layer: modes are normalised, never
/// copied from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// 0644.
    Regular,
    /// 0755.
    Executable,
}

/// Where a file entry's bytes come from.
enum Source<'a> {
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

enum Node<'a> {
    Dir,
    File { source: Source<'a>, mode: FileMode },
    Symlink(String),
}

impl Node<'_> {
    fn is_dir(&self) -> bool {
        matches!(self, Self::Dir)
    }
}

/// Collects the entries of a layer, then writes it as a deterministic,
/// gzipped tar.
///
/// Nothing of the sources' own metadata reaches the tar: entries come out
/// sorted (depth first, names in byte order) whatever order they were added
/// in, every parent directory is an explicit entry, modes are 0755 for
/// directories and executables, 0644 for other files, 0777 for symlinks,
/// and mtime, uid and gid come from [`LayerOptions`] (user and group names
/// are empty). The gzip header has no file name, mtime 0, OS byte 255 and
/// the level's fixed `XFL`. So the same entries and options always give the
/// same bytes.
///
/// Paths are image paths, `/opt/java/bin/java` or `opt/java/bin/java`; `..`,
/// `.`, empty components, control characters and `.wh.` (whiteout) names
/// are refused.
///
/// File contents are read only by [`write_to`](Self::write_to), through a
/// small buffer: a 200 MB JAR added with [`add_file`](Self::add_file) is
/// never held in memory.
///
/// # Examples
///
/// ```
/// use cameleer_build::oci::{FileMode, LayerBuilder};
///
/// let layer = || {
///     let mut b = LayerBuilder::new();
///     b.add_bytes("/app/app.jar", b"PK...".to_vec(), FileMode::Regular).unwrap();
///     b
/// };
/// let one = layer().build_in_memory().unwrap();
/// let two = layer().build_in_memory().unwrap();
/// assert_eq!(one.layer.digest, two.layer.digest);
/// assert_eq!(one, two);
/// ```
pub struct LayerBuilder<'a> {
    options: LayerOptions,
    entries: BTreeMap<LayerPath, Node<'a>>,
}

impl std::fmt::Debug for LayerBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerBuilder")
            .field("options", &self.options)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Default for LayerBuilder<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> LayerBuilder<'a> {
    /// An empty layer with the default [`LayerOptions`].
    pub fn new() -> Self {
        Self::with_options(LayerOptions::default())
    }

    /// An empty layer with the given options.
    pub fn with_options(options: LayerOptions) -> Self {
        Self {
            options,
            entries: BTreeMap::new(),
        }
    }

    /// The options the layer will be written with.
    pub fn options(&self) -> &LayerOptions {
        &self.options
    }

    /// The number of entries, implicit parent directories included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the layer has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a directory (and its parents). Adding an existing directory
    /// again is not an error.
    pub fn add_dir(&mut self, path: &str) -> Result<&mut Self, OciError> {
        self.insert(LayerPath::parse(path)?, Node::Dir)
    }

    /// Adds a file whose bytes are in memory.
    pub fn add_bytes(
        &mut self,
        path: &str,
        data: impl Into<Vec<u8>>,
        mode: FileMode,
    ) -> Result<&mut Self, OciError> {
        let data = data.into();
        let path = LayerPath::parse(path)?;
        check_size(&path, data.len() as u64)?;
        let source = Source::Bytes(data);
        self.insert(path, Node::File { source, mode })
    }

    /// Adds a file read from `reader`, which must yield exactly `size`
    /// bytes when the layer is written (else `size_mismatch`).
    pub fn add_reader(
        &mut self,
        path: &str,
        reader: impl Read + 'a,
        size: u64,
        mode: FileMode,
    ) -> Result<&mut Self, OciError> {
        let path = LayerPath::parse(path)?;
        check_size(&path, size)?;
        let source = Source::Reader {
            reader: Box::new(reader),
            size,
        };
        self.insert(path, Node::File { source, mode })
    }

    /// Adds the file at `source` on disk (symlinks followed), to be read
    /// when the layer is written. Its size is taken now; if the file then
    /// vanishes or changes size, writing fails with `source_changed`.
    pub fn add_file(
        &mut self,
        path: &str,
        source: impl AsRef<Path>,
        mode: FileMode,
    ) -> Result<&mut Self, OciError> {
        let path = LayerPath::parse(path)?;
        let source = source.as_ref();
        let meta = std::fs::metadata(source).map_err(|e| stat_error(source, e))?;
        if !meta.is_file() {
            return Err(OciError::UnsupportedFileType {
                path: source.to_string_lossy().into_owned(),
                kind: "not a regular file",
            });
        }
        self.add_disk_file(path, source.to_path_buf(), meta.len(), mode)
    }

    pub(crate) fn add_disk_file(
        &mut self,
        path: LayerPath,
        source: PathBuf,
        size: u64,
        mode: FileMode,
    ) -> Result<&mut Self, OciError> {
        check_size(&path, size)?;
        let source = Source::Path { path: source, size };
        self.insert(path, Node::File { source, mode })
    }

    /// Adds a symbolic link to `target`, kept verbatim (relative targets
    /// with `..` and absolute ones resolve inside the container).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, OciError> {
        let path = LayerPath::parse(path)?;
        self.add_link(path, target.to_owned())
    }

    pub(crate) fn add_link(
        &mut self,
        path: LayerPath,
        target: String,
    ) -> Result<&mut Self, OciError> {
        check_link_target(&path, &target)?;
        self.insert(path, Node::Symlink(target))
    }

    pub(crate) fn insert_dir(&mut self, path: LayerPath) -> Result<&mut Self, OciError> {
        self.insert(path, Node::Dir)
    }

    /// Inserts `node` and any missing parent directory, or nothing at all
    /// on error.
    fn insert(&mut self, path: LayerPath, node: Node<'a>) -> Result<&mut Self, OciError> {
        for parent in path.ancestors() {
            if self.entries.get(&parent).is_some_and(|n| !n.is_dir()) {
                return Err(OciError::PathConflict {
                    path: cut(&path.display(), 300),
                    reason: "a parent is a file or a symlink",
                });
            }
        }
        match self.entries.get(&path) {
            None => {}
            Some(Node::Dir) if node.is_dir() => return Ok(self),
            Some(Node::Dir) => {
                return Err(OciError::PathConflict {
                    path: cut(&path.display(), 300),
                    reason: "a directory is already there",
                });
            }
            Some(_) if node.is_dir() => {
                return Err(OciError::PathConflict {
                    path: cut(&path.display(), 300),
                    reason: "a file or a symlink is already there",
                });
            }
            Some(_) => return Err(OciError::DuplicatePath(cut(&path.display(), 300))),
        }
        for parent in path.ancestors().collect::<Vec<_>>() {
            if let Entry::Vacant(v) = self.entries.entry(parent) {
                v.insert(Node::Dir);
            }
        }
        self.entries.insert(path, node);
        Ok(self)
    }

    /// Moves every entry of `other` (which holds the parents of all its
    /// entries) into this layer, or nothing on a conflict.
    pub(crate) fn merge(&mut self, other: LayerBuilder<'a>) -> Result<(), OciError> {
        for (path, node) in &other.entries {
            let reason = match (self.entries.get(path), node.is_dir()) {
                (None, _) | (Some(Node::Dir), true) => continue,
                (Some(Node::Dir), false) => "a directory is already there",
                (Some(_), true) => "a file or a symlink is already there",
                (Some(_), false) => {
                    return Err(OciError::DuplicatePath(cut(&path.display(), 300)));
                }
            };
            return Err(OciError::PathConflict {
                path: cut(&path.display(), 300),
                reason,
            });
        }
        for (path, node) in other.entries {
            if let Entry::Vacant(v) = self.entries.entry(path) {
                v.insert(node);
            }
        }
        Ok(())
    }

    /// Writes the gzipped tar into `out`, hashing it on the way, and
    /// returns its digests and sizes. `out` is flushed, not synced.
    pub fn write_to<W: Write>(self, out: W) -> Result<Layer, OciError> {
        self.options.validate()?;
        let level = Compression::new(self.options.compression_level);
        let gz = GzBuilder::new()
            .mtime(0)
            .operating_system(GZIP_OS_UNKNOWN)
            .write(HashingWriter::new(out), level);
        let mut tar = tar::Builder::new(HashingWriter::new(gz));
        let wrote = |e| OciError::io("writing the layer", e);
        for (path, node) in self.entries {
            write_node(&mut tar, &self.options, &path, node)?;
        }
        let tar_out = tar.into_inner().map_err(wrote)?;
        let uncompressed_size = tar_out.written();
        let (gz, diff_id) = tar_out.finish();
        let blob = gz.finish().map_err(wrote)?;
        let size = blob.written();
        let (mut out, digest) = blob.finish();
        out.flush().map_err(wrote)?;
        Ok(Layer {
            diff_id,
            digest,
            size,
            uncompressed_size,
        })
    }

    /// The layer's digests and sizes, without keeping its bytes.
    pub fn measure(self) -> Result<Layer, OciError> {
        self.write_to(io::sink())
    }

    /// Builds the layer in memory: for small layers (an agent JAR, tests).
    pub fn build_in_memory(self) -> Result<LayerBlob, OciError> {
        let mut bytes = Vec::new();
        let layer = self.write_to(&mut bytes)?;
        Ok(LayerBlob {
            layer,
            source: BlobSource::Memory(bytes),
            created_by: None,
        })
    }

    /// Writes the layer's gzip blob to a new file at `dest` (replacing any),
    /// streaming: for large layers (the JRE, the application JAR).
    pub fn write_file(self, dest: impl AsRef<Path>) -> Result<LayerBlob, OciError> {
        let dest = dest.as_ref();
        let ctx = || format!("writing {}", dest.display());
        let file = File::create(dest).map_err(|e| OciError::io(ctx(), e))?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let layer = self.write_to(&mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| OciError::io(ctx(), e.into_error()))?;
        file.sync_all().map_err(|e| OciError::io(ctx(), e))?;
        Ok(LayerBlob {
            layer,
            source: BlobSource::File(dest.to_path_buf()),
            created_by: None,
        })
    }
}

fn check_size(path: &LayerPath, size: u64) -> Result<(), OciError> {
    if size > MAX_USTAR_SIZE {
        return Err(OciError::FileTooLarge {
            path: cut(&path.display(), 300),
            size,
        });
    }
    Ok(())
}

/// A vanished file is `source_changed`; anything else an I/O error.
pub(crate) fn stat_error(path: &Path, e: io::Error) -> OciError {
    if e.kind() == io::ErrorKind::NotFound {
        OciError::SourceChanged {
            path: path.to_string_lossy().into_owned(),
            reason: "it does not exist (any more)".into(),
        }
    } else {
        OciError::io(format!("reading {}", path.display()), e)
    }
}

fn write_node<W: Write>(
    tar: &mut tar::Builder<W>,
    opts: &LayerOptions,
    path: &LayerPath,
    node: Node<'_>,
) -> Result<(), OciError> {
    let wrote = |e| OciError::io("writing the layer", e);
    match node {
        Node::Dir => append_entry(tar, opts, &path.tar_name(true), EntryKind::Dir, io::empty())
            .map_err(wrote),
        Node::Symlink(target) => append_entry(
            tar,
            opts,
            &path.tar_name(false),
            EntryKind::Symlink { target: &target },
            io::empty(),
        )
        .map_err(wrote),
        Node::File { source, mode } => {
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
                    (None, None) => {
                        OciError::io(format!("writing the layer entry {}", path.display()), e)
                    }
                }),
            }
        }
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
