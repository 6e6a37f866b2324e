//! Where compiled JARs and build scratch space are kept.

use std::io;
use std::path::{Path, PathBuf};

use super::JdkError;

/// Where Cameleer caches compiled JARs and build scratch space, created on
/// first use:
///
/// 1. `$CAMELEER_CACHE_DIR` when set;
/// 2. else `cameleer-cache` in the cargo target directory the running binary
///    lives in (found by cargo's `CACHEDIR.TAG`; this covers tests, examples
///    and a custom `CARGO_TARGET_DIR`), or in an absolute `$CARGO_TARGET_DIR`;
/// 3. else `cameleer-cache-<uid>` in the system temporary directory, private
///    to the user (mode 0700, and refused when someone else owns it, since a
///    cached JAR ends up running).
pub fn cache_dir() -> Result<PathBuf, JdkError> {
    let create = |dir: PathBuf| -> Result<PathBuf, JdkError> {
        std::fs::create_dir_all(&dir)
            .map_err(JdkError::io(format!("creating {}", dir.display())))?;
        Ok(dir)
    };
    if let Some(dir) = std::env::var_os("CAMELEER_CACHE_DIR").filter(|d| !d.is_empty()) {
        return create(PathBuf::from(dir));
    }
    if let Some(target) = cargo_target_dir() {
        return create(target.join("cameleer-cache"));
    }
    private_temp_cache()
}

fn cargo_target_dir() -> Option<PathBuf> {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
    {
        return Some(dir.to_path_buf());
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
}

#[cfg(unix)]
fn private_temp_cache() -> Result<PathBuf, JdkError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // The owner of /proc/self is the effective uid, and reading it needs no unsafe.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("cameleer-cache-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(JdkError::io(format!("creating {}", dir.display()))(e)),
    }
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(JdkError::io(format!("inspecting {}", dir.display())))?;
    let unsafe_because = if !meta.is_dir() {
        Some("it is not a directory".to_string())
    } else if meta.uid() != uid {
        Some(format!("it is owned by uid {}, not {uid}", meta.uid()))
    } else if meta.permissions().mode() & 0o022 != 0 {
        Some("others can write to it".to_string())
    } else {
        None
    };
    match unsafe_because {
        Some(reason) => Err(JdkError::UnsafeCacheDir { path: dir, reason }),
        None => Ok(dir),
    }
}

#[cfg(not(unix))]
fn private_temp_cache() -> Result<PathBuf, JdkError> {
    let dir = std::env::temp_dir().join("cameleer-cache");
    std::fs::create_dir_all(&dir).map_err(JdkError::io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// A fresh scratch directory under `cache` (the [`cache_dir`]), so results
/// built in it can be renamed into the cache atomically; it is removed when
/// dropped.
pub fn scratch_dir(cache: &Path) -> Result<tempfile::TempDir, JdkError> {
    let tmp = cache.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(JdkError::io(format!("creating {}", tmp.display())))?;
    tempfile::Builder::new()
        .prefix("work-")
        .tempdir_in(&tmp)
        .map_err(JdkError::io(format!(
            "creating a scratch directory in {}",
            tmp.display()
        )))
}
