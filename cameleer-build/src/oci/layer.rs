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
use super::source::{Source, append_file};
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

/// A directory's mode and owner when they are not the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirMeta {
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
}

enum Node<'a> {
    /// A directory: 0755 and the layer's owner, or `DirMeta`.
    Dir(Option<DirMeta>),
    File {
        source: Source<'a>,
        mode: FileMode,
    },
    Symlink(String),
}

impl Node<'_> {
    fn is_dir(&self) -> bool {
        matches!(self, Self::Dir(_))
    }
}

/// What adding `new` at `path` does, given what is there.
enum Action {
    /// Nothing there: insert.
    Insert,
    /// The same directory: nothing to do.
    Keep,
    /// A plain directory that `new` gives a mode or owner: replace it.
    Replace,
}

fn combine(
    path: &LayerPath,
    existing: Option<&Node<'_>>,
    new: &Node<'_>,
) -> Result<Action, OciError> {
    let conflict = |reason| {
        Err(OciError::PathConflict {
            path: cut(&path.display(), 300),
            reason,
        })
    };
    match (existing, new) {
        (None, _) => Ok(Action::Insert),
        (Some(Node::Dir(_)), Node::Dir(None)) => Ok(Action::Keep),
        (Some(Node::Dir(None)), Node::Dir(Some(_))) => Ok(Action::Replace),
        (Some(Node::Dir(Some(a))), Node::Dir(Some(b))) if a == b => Ok(Action::Keep),
        (Some(Node::Dir(Some(_))), Node::Dir(Some(_))) => {
            conflict("the directory is already there with another mode or owner")
        }
        (Some(Node::Dir(_)), _) => conflict("a directory is already there"),
        (Some(_), Node::Dir(_)) => conflict("a file or a symlink is already there"),
        (Some(_), _) => Err(OciError::DuplicatePath(cut(&path.display(), 300))),
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
/// are empty); only directories added with [`add_dir_with`](Self::add_dir_with)
/// have their own mode and owner. The gzip header has no file name, mtime 0, OS byte 255 and
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
        self.insert(LayerPath::parse(path)?, Node::Dir(None))
    }

    /// Adds a directory (and its parents) with its own mode and owner,
    /// for the few that need them: a sticky world-writable `/tmp`
    /// (`0o1777`), a home directory owned by the runtime user. Its parents
    /// keep the defaults. Adding it again with another mode or owner is a
    /// `path_conflict`; a plain [`add_dir`](Self::add_dir) of it, or a
    /// tree that contains it, keeps this mode and owner.
    pub fn add_dir_with(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Result<&mut Self, OciError> {
        const MAX_ID: u64 = 0o7_777_777;
        if mode > 0o7777 {
            return Err(OciError::InvalidLayerOptions(
                "a directory mode must be at most 0o7777",
            ));
        }
        if uid > MAX_ID || gid > MAX_ID {
            return Err(OciError::InvalidLayerOptions(
                "uid and gid must be at most 2097151",
            ));
        }
        let meta = DirMeta { mode, uid, gid };
        self.insert(LayerPath::parse(path)?, Node::Dir(Some(meta)))
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
        self.insert(path, Node::Dir(None))
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
        let action = combine(&path, self.entries.get(&path), &node)?;
        for parent in path.ancestors().collect::<Vec<_>>() {
            if let Entry::Vacant(v) = self.entries.entry(parent) {
                v.insert(Node::Dir(None));
            }
        }
        if !matches!(action, Action::Keep) {
            self.entries.insert(path, node);
        }
        Ok(self)
    }

    /// Moves every entry of `other` (which holds the parents of all its
    /// entries) into this layer, or nothing on a conflict.
    pub(crate) fn merge(&mut self, other: LayerBuilder<'a>) -> Result<(), OciError> {
        for (path, node) in &other.entries {
            combine(path, self.entries.get(path), node)?;
        }
        for (path, node) in other.entries {
            if !matches!(
                combine(&path, self.entries.get(&path), &node)?,
                Action::Keep
            ) {
                self.entries.insert(path, node);
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
        Node::Dir(meta) => {
            let (mode, opts) = match meta {
                None => (0o755, *opts),
                Some(m) => (
                    m.mode,
                    LayerOptions {
                        uid: m.uid,
                        gid: m.gid,
                        ..*opts
                    },
                ),
            };
            let kind = EntryKind::Dir { mode };
            append_entry(tar, &opts, &path.tar_name(true), kind, io::empty()).map_err(wrote)
        }
        Node::Symlink(target) => append_entry(
            tar,
            opts,
            &path.tar_name(false),
            EntryKind::Symlink { target: &target },
            io::empty(),
        )
        .map_err(wrote),
        Node::File { source, mode } => append_file(tar, opts, path, source, mode),
    }
}
