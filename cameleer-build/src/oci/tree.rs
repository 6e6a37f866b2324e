//! A directory tree on disk (a `jlink` runtime) as layer entries.

use std::fs::{self, Metadata};
use std::path::Path;

use super::OciError;
use super::layer::{FileMode, LayerBuilder, stat_error};
use super::path::LayerPath;

impl<'a> LayerBuilder<'a> {
    /// Adds the contents of the directory `dir` under the image path
    /// `prefix` (e.g. a `jlink` output under `/opt/java`), `prefix` and its
    /// parents included as directories. A `prefix` of `/` puts the contents
    /// at the image root (a base file system exported as a directory).
    ///
    /// What is taken from disk is only the tree's shape, the file contents,
    /// symlink targets and whether a file is executable (any `x` bit on
    /// Unix; never elsewhere): the result does not depend on the order the
    /// directory lists its entries in, nor on mtimes, owners or other
    /// permission bits. Symlinks are kept as symlinks (never followed), so a
    /// link to a directory does not pull the directory in and a link loop
    /// is harmless. Files are only stat'ed here and read by
    /// [`write_to`](Self::write_to).
    ///
    /// Errors: `non_utf8_path` for a name or symlink target that is not
    /// UTF-8, `unsupported_file_type` for sockets, FIFOs and devices (and
    /// for a `dir` that is not a directory), `source_changed` for an entry
    /// that vanishes during the walk, `invalid_path` for names the layer
    /// refuses (`.wh.` whiteouts, control characters).
    pub fn add_tree(&mut self, prefix: &str, dir: impl AsRef<Path>) -> Result<&mut Self, OciError> {
        let dir = dir.as_ref();
        let root = if prefix == "/" {
            LayerPath::root()
        } else {
            LayerPath::parse(prefix)?
        };
        let meta = fs::metadata(dir).map_err(|e| stat_error(dir, e))?;
        if !meta.is_dir() {
            return Err(OciError::UnsupportedFileType {
                path: dir.to_string_lossy().into_owned(),
                kind: "not a directory",
            });
        }
        // Walk into a scratch builder first, so a failure adds nothing.
        let mut scratch = LayerBuilder::with_options(*self.options());
        if !root.is_root() {
            scratch.insert_dir(root.clone())?;
        }
        walk(&mut scratch, &root, dir)?;
        self.merge(scratch)?;
        Ok(self)
    }
}

fn walk(layer: &mut LayerBuilder<'_>, at: &LayerPath, dir: &Path) -> Result<(), OciError> {
    let entries = fs::read_dir(dir).map_err(|e| stat_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| stat_error(dir, e))?;
        let disk = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(non_utf8(&disk));
        };
        let path = at.join(name)?;
        let meta = fs::symlink_metadata(&disk).map_err(|e| stat_error(&disk, e))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&disk).map_err(|e| stat_error(&disk, e))?;
            let Some(target) = target.to_str() else {
                return Err(non_utf8(&disk));
            };
            layer.add_link(path, target.to_owned())?;
        } else if ft.is_dir() {
            layer.insert_dir(path.clone())?;
            walk(layer, &path, &disk)?;
        } else if ft.is_file() {
            layer.add_disk_file(path, disk, meta.len(), mode_of(&meta))?;
        } else {
            return Err(OciError::UnsupportedFileType {
                path: disk.to_string_lossy().into_owned(),
                kind: "not a directory, a regular file or a symlink",
            });
        }
    }
    Ok(())
}

fn non_utf8(path: &Path) -> OciError {
    OciError::NonUtf8Path {
        path: path.to_string_lossy().into_owned(),
    }
}

#[cfg(unix)]
fn mode_of(meta: &Metadata) -> FileMode {
    use std::os::unix::fs::PermissionsExt as _;
    if meta.permissions().mode() & 0o111 != 0 {
        FileMode::Executable
    } else {
        FileMode::Regular
    }
}

#[cfg(not(unix))]
fn mode_of(_meta: &Metadata) -> FileMode {
    FileMode::Regular
}
