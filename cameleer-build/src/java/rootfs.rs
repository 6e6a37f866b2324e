//! A root filesystem assembled from host files, and the shared libraries
//! its binaries need.
//!
//! Both image routes start from it: the Docker backend writes it as a tar
//! for `docker import` ([`RootFs::write_tar`]), the daemonless OCI route
//! turns it into a layer ([`RootFs::to_layer`]). Neither needs a container
//! engine to build it: it is host files, `ldd` and bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::jre::JreError;
use crate::oci::{FileMode, LayerBuilder, LayerOptions, OciError};
use crate::{IMAGE_GID, IMAGE_UID};

/// The name of [`IMAGE_UID`] in the image's `/etc/passwd`.
pub const IMAGE_USER: &str = "cameleer";

/// Every entry of a [`write_tar`](RootFs::write_tar) tar gets this
/// modification time (2000-01-01), so the same files give the same tar
/// bytes and the same layer digest.
const MTIME: u64 = 946_684_800;

#[derive(Debug, Clone)]
enum Entry {
    Dir { mode: u32, uid: u64 },
    HostFile { source: PathBuf, mode: u32 },
    Data { bytes: Vec<u8>, mode: u32 },
    Symlink { target: String },
}

/// The files of an image-to-be, by absolute path inside the image.
///
/// # Examples
///
/// ```
/// use cameleer_build::java::rootfs::RootFs;
///
/// let mut fs = RootFs::skeleton();
/// fs.add_data("/etc/motd", b"hello\n".to_vec(), 0o644);
/// let layer = fs.to_layer(Default::default())?.build_in_memory()?;
/// assert!(layer.layer.size > 0);
/// # Ok::<(), cameleer_build::oci::OciError>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct RootFs {
    entries: BTreeMap<String, Entry>,
}

impl RootFs {
    /// The skeleton every Cameleer image has: the non-root runtime user
    /// ([`IMAGE_USER`], uid [`IMAGE_UID`]) in `/etc/passwd` and `/etc/group`
    /// (so `user.home` and `user.name` resolve), `nsswitch.conf` for glibc's
    /// lookups, a sticky world-writable `/tmp` (the JVM's perf data and temp
    /// files; the runtime mounts a tmpfs over it when the root is
    /// read-only), and the user's home.
    pub fn skeleton() -> RootFs {
        let mut fs = RootFs::default();
        let passwd = format!(
            "root:x:0:0:root:/root:/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
             {IMAGE_USER}:x:{IMAGE_UID}:{IMAGE_GID}:{IMAGE_USER}:/home/{IMAGE_USER}:/sbin/nologin\n"
        );
        let group = format!("root:x:0:\nnogroup:x:65534:\n{IMAGE_USER}:x:{IMAGE_GID}:\n");
        fs.add_data("/etc/passwd", passwd.into_bytes(), 0o644);
        fs.add_data("/etc/group", group.into_bytes(), 0o644);
        fs.add_data(
            "/etc/nsswitch.conf",
            b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
                .to_vec(),
            0o644,
        );
        for dir in ["/proc", "/sys", "/dev", "/etc", "/root"] {
            fs.add_dir(dir, 0o755, 0);
        }
        fs.add_dir("/tmp", 0o1777, 0);
        fs.add_dir(&format!("/home/{IMAGE_USER}"), 0o755, IMAGE_UID.into());
        fs
    }

    /// A directory with its mode, owned by `uid:uid`.
    pub fn add_dir(&mut self, path: &str, mode: u32, uid: u64) {
        self.entries
            .insert(normalize(path), Entry::Dir { mode, uid });
    }

    /// A file with the given bytes and mode.
    pub fn add_data(&mut self, path: &str, bytes: Vec<u8>, mode: u32) {
        self.entries
            .insert(normalize(path), Entry::Data { bytes, mode });
    }

    /// A host file, copied with its content (symlinks followed) when the
    /// tree is written.
    pub fn add_host_file(&mut self, path: &str, source: &Path, mode: u32) {
        self.entries.insert(
            normalize(path),
            Entry::HostFile {
                source: source.to_path_buf(),
                mode,
            },
        );
    }

    /// A symbolic link to `target`, kept verbatim.
    pub fn add_symlink(&mut self, path: &str, target: &str) {
        self.entries.insert(
            normalize(path),
            Entry::Symlink {
                target: target.to_string(),
            },
        );
    }

    /// Copies the host tree at `source` to `dest`, keeping permission bits
    /// and symlinks (jlink writes relative ones for shared legal notices).
    pub fn add_tree(&mut self, source: &Path, dest: &str) -> Result<(), JreError> {
        use std::os::unix::fs::PermissionsExt;
        let entries = std::fs::read_dir(source)
            .map_err(JreError::io(format!("reading {}", source.display())))?;
        self.add_dir(dest, 0o755, 0);
        for entry in entries {
            let entry = entry.map_err(JreError::io(format!("reading {}", source.display())))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| JreError::InvalidConfig {
                field: "jdk".into(),
                reason: format!("{} is not a UTF-8 path", path.display()),
            })?;
            let target = format!("{}/{name}", dest.trim_end_matches('/'));
            let meta = std::fs::symlink_metadata(&path)
                .map_err(JreError::io(format!("reading {}", path.display())))?;
            if meta.file_type().is_symlink() {
                let link = std::fs::read_link(&path)
                    .map_err(JreError::io(format!("reading {}", path.display())))?;
                self.add_symlink(&target, &link.to_string_lossy());
            } else if meta.is_dir() {
                self.add_tree(&path, &target)?;
            } else if meta.is_file() {
                self.add_host_file(&target, &path, meta.permissions().mode() & 0o7777);
            }
        }
        Ok(())
    }

    /// Writes the tree as an uncompressed tar for `docker import`, with
    /// `root:root` ownership (but for explicit directory owners), sorted
    /// paths, every parent as an entry and a fixed mtime.
    pub fn write_tar(&self, out: impl Write) -> Result<(), JreError> {
        let mut all: BTreeMap<String, Entry> = self.entries.clone();
        // Parents of every entry, unless given explicitly.
        for path in self.entries.keys() {
            let mut parent = Path::new(path).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                all.entry(p.to_string_lossy().into_owned())
                    .or_insert(Entry::Dir {
                        mode: 0o755,
                        uid: 0,
                    });
                parent = p.parent();
            }
        }
        let mut tar = tar::Builder::new(out);
        let err = |path: &str| JreError::io(format!("writing {path} to the image tar"));
        for (path, entry) in &all {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(MTIME);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                Entry::Dir { mode, uid } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(*uid);
                    header.set_gid(*uid);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), io::empty())
                        .map_err(err(path))?;
                }
                Entry::HostFile { source, mode } => {
                    let file = File::open(source)
                        .map_err(JreError::io(format!("opening {}", source.display())))?;
                    let len = file
                        .metadata()
                        .map_err(JreError::io(format!("reading {}", source.display())))?
                        .len();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(len);
                    tar.append_data(&mut header, path, io::Read::take(file, len))
                        .map_err(err(path))?;
                }
                Entry::Data { bytes, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, path, bytes.as_slice())
                        .map_err(err(path))?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)
                        .map_err(err(path))?;
                }
            }
        }
        tar.into_inner()
            .map_err(err("the end"))?
            .flush()
            .map_err(err("the end"))?;
        Ok(())
    }

    /// The tree as an OCI layer, with the layer's normalisation: files are
    /// 0755 when any `x` bit is set and 0644 otherwise, directories keep
    /// their mode and owner only when they are not 0755 root (a sticky
    /// `/tmp`, the user's home), mtime and owners come from `options`.
    /// Host files are read when the layer is written.
    pub fn to_layer(&self, options: LayerOptions) -> Result<LayerBuilder<'static>, OciError> {
        let mut layer = LayerBuilder::with_options(options);
        for (path, entry) in &self.entries {
            let path = format!("/{path}");
            match entry {
                Entry::Dir {
                    mode: 0o755,
                    uid: 0,
                } => {
                    layer.add_dir(&path)?;
                }
                Entry::Dir { mode, uid } => {
                    layer.add_dir_with(&path, *mode, *uid, *uid)?;
                }
                Entry::HostFile { source, mode } => {
                    layer.add_file(&path, source, file_mode(*mode))?;
                }
                Entry::Data { bytes, mode } => {
                    layer.add_bytes(&path, bytes.clone(), file_mode(*mode))?;
                }
                Entry::Symlink { target } => {
                    layer.add_symlink(&path, target)?;
                }
            }
        }
        Ok(layer)
    }
}

fn file_mode(mode: u32) -> FileMode {
    if mode & 0o111 != 0 {
        FileMode::Executable
    } else {
        FileMode::Regular
    }
}

/// Tar paths are relative: `/etc/passwd` → `etc/passwd`.
fn normalize(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// One shared library a binary needs, as `ldd` resolved it on this host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needed {
    /// Found at this path (which the image gets at the same path).
    Found(PathBuf),
    /// Not found on this host.
    Missing(String),
}

/// Runs `ldd` on `files` and returns what each needs, transitively (ldd
/// lists the whole load closure). The kernel's vDSO is left out.
pub fn ldd(files: &[PathBuf]) -> Result<BTreeMap<PathBuf, BTreeSet<Needed>>, JreError> {
    let mut out = BTreeMap::new();
    if files.is_empty() {
        return Ok(out);
    }
    // ldd exits with 1 when any file is static; its listing is still complete.
    let output = Command::new("ldd")
        .args(files)
        .output()
        .map_err(JreError::io(
            "running ldd (the image needs the host's dynamic libraries)",
        ))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let headers: BTreeSet<String> = files.iter().map(|f| format!("{}:", f.display())).collect();
    let mut current = (files.len() == 1).then(|| files[0].clone());
    for file in files {
        out.insert(file.clone(), BTreeSet::new());
    }
    for line in stdout.lines() {
        if files.len() > 1 && headers.contains(line.trim_end()) {
            current = Some(PathBuf::from(line.trim_end().trim_end_matches(':')));
            continue;
        }
        let (Some(file), Some(needed)) = (&current, parse_ldd_line(line)) else {
            continue;
        };
        out.entry(file.clone()).or_default().insert(needed);
    }
    Ok(out)
}

fn parse_ldd_line(line: &str) -> Option<Needed> {
    let line = line.trim();
    if let Some((name, rest)) = line.split_once("=>") {
        let rest = rest.trim();
        if rest.starts_with("not found") {
            return Some(Needed::Missing(name.trim().to_string()));
        }
        let path = rest.split_whitespace().next()?;
        return path
            .starts_with('/')
            .then(|| Needed::Found(PathBuf::from(path)));
    }
    // The dynamic loader: "/lib64/ld-linux-x86-64.so.2 (0x...)".
    let first = line.split_whitespace().next()?;
    first
        .starts_with('/')
        .then(|| Needed::Found(PathBuf::from(first)))
}

/// The host libraries `binaries` need beyond what `provided` (the files
/// already in the image, by file name, under `provided_root` on the host)
/// supplies. A library that cannot be found is an error when one of
/// `essential` needs it, and a warning otherwise (the binary needing it
/// would fail only when loaded, e.g. a GUI library in a headless JVM).
pub fn host_libraries(
    binaries: &[PathBuf],
    provided_root: Option<&Path>,
    essential: &dyn Fn(&Path) -> bool,
) -> Result<BTreeSet<PathBuf>, JreError> {
    let provided: BTreeSet<String> = binaries
        .iter()
        .filter_map(|b| Some(b.file_name()?.to_string_lossy().into_owned()))
        .collect();
    let mut libs = BTreeSet::new();
    for (binary, needs) in ldd(binaries)? {
        for needed in needs {
            match needed {
                Needed::Found(path) => {
                    if !provided_root.is_some_and(|root| path.starts_with(root)) {
                        libs.insert(path);
                    }
                }
                Needed::Missing(name) if provided.contains(&name) => {}
                Needed::Missing(name) if essential(&binary) => {
                    return Err(JreError::MissingLibrary {
                        library: name,
                        needed_by: binary.display().to_string(),
                    });
                }
                Needed::Missing(name) => {
                    tracing::warn!(library = %name, needed_by = %binary.display(), "host library not found; leaving it out of the image");
                }
            }
        }
    }
    Ok(libs)
}

/// Every regular file under `dir`, recursively (symlinks are not followed).
pub fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), JreError> {
    for entry in
        std::fs::read_dir(dir).map_err(JreError::io(format!("reading {}", dir.display())))?
    {
        let path = entry
            .map_err(JreError::io(format!("reading {}", dir.display())))?
            .path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(JreError::io(format!("reading {}", path.display())))?;
        if meta.is_dir() {
            collect_files(&path, out)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Feeds `(path, SHA-256 of the content)` of each file to `hasher`, each
/// field length-prefixed: content keys of images made of host files.
pub fn hash_files(files: &BTreeSet<PathBuf>, hasher: &mut Sha256) -> Result<(), JreError> {
    for file in files {
        let mut f =
            File::open(file).map_err(JreError::io(format!("opening {}", file.display())))?;
        let mut h = Sha256::new();
        io::copy(&mut f, &mut h).map_err(JreError::io(format!("reading {}", file.display())))?;
        super::hash_field(hasher, file.to_string_lossy().as_bytes());
        super::hash_field(hasher, &h.finalize());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_parse() {
        let found = |p: &str| Some(Needed::Found(PathBuf::from(p)));
        assert_eq!(
            parse_ldd_line("\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)"),
            found("/lib/x86_64-linux-gnu/libz.so.1")
        );
        assert_eq!(
            parse_ldd_line("\t/lib64/ld-linux-x86-64.so.2 (0x00007f)"),
            found("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(
            parse_ldd_line("\tlibjvm.so => not found"),
            Some(Needed::Missing("libjvm.so".into()))
        );
        assert_eq!(parse_ldd_line("\tlinux-vdso.so.1 (0x00007ffd)"), None);
        assert_eq!(parse_ldd_line("\tnot a dynamic executable"), None);
        assert_eq!(parse_ldd_line("\tstatically linked"), None);
    }

    #[test]
    fn the_tar_is_deterministic_and_has_parents_and_owners() {
        let mut fs = RootFs::skeleton();
        fs.add_data(
            "/opt/java/release",
            b"JAVA_VERSION=\"17\"\n".to_vec(),
            0o644,
        );
        fs.add_symlink("/opt/java/legal/LICENSE", "../release");
        let mut a = Vec::new();
        let mut b = Vec::new();
        fs.write_tar(&mut a).unwrap();
        fs.write_tar(&mut b).unwrap();
        assert_eq!(a, b);
        let mut archive = tar::Archive::new(a.as_slice());
        let mut seen = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            seen.insert(
                entry.path().unwrap().to_string_lossy().into_owned(),
                (h.mode().unwrap(), h.uid().unwrap()),
            );
        }
        assert_eq!(seen["tmp/"], (0o1777, 0));
        assert_eq!(seen["opt/"], (0o755, 0));
        assert_eq!(seen["home/cameleer/"], (0o755, u64::from(IMAGE_UID)));
        assert!(seen.contains_key("opt/java/legal/LICENSE"));
        assert!(seen.contains_key("etc/passwd"));
    }

    #[test]
    fn the_layer_keeps_tmp_sticky_and_home_owned_by_the_user() {
        let mut fs = RootFs::skeleton();
        fs.add_data("/opt/java/bin/java", b"#!".to_vec(), 0o750);
        let blob = fs.to_layer(LayerOptions::default()).unwrap();
        let blob = blob.build_in_memory().unwrap();
        let crate::oci::BlobSource::Memory(gz) = &blob.source else {
            panic!("in memory")
        };
        let tar = flate2::read::GzDecoder::new(gz.as_slice());
        let mut archive = tar::Archive::new(tar);
        let mut seen = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            seen.insert(
                entry.path().unwrap().to_string_lossy().into_owned(),
                (h.mode().unwrap(), h.uid().unwrap()),
            );
        }
        assert_eq!(seen["tmp/"], (0o1777, 0));
        assert_eq!(seen["home/cameleer/"], (0o755, u64::from(IMAGE_UID)));
        assert_eq!(seen["opt/java/bin/java"], (0o755, 0));
        assert_eq!(seen["etc/passwd"], (0o644, 0));
        let again = fs.to_layer(LayerOptions::default()).unwrap();
        assert_eq!(again.build_in_memory().unwrap().layer, blob.layer);
    }

    #[test]
    fn a_static_binary_needs_no_libraries() {
        let static_busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        if let Some(bb) = static_busybox {
            let libs = host_libraries(std::slice::from_ref(&bb), None, &|_| true).unwrap();
            let needs = ldd(std::slice::from_ref(&bb)).unwrap();
            assert_eq!(libs.is_empty(), needs[&bb].is_empty());
        }
        let libs = host_libraries(
            &[PathBuf::from("/bin/ls"), PathBuf::from("/bin/cat")],
            None,
            &|_| true,
        )
        .unwrap();
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
        assert!(
            libs.iter()
                .any(|l| l.to_string_lossy().contains("ld-linux")),
            "{libs:?}"
        );
    }
}
