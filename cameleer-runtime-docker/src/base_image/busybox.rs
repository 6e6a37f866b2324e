//! The busybox image: the host's busybox and its applets, for tiny test
//! containers that need a shell or network tools.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use cameleer_build::ImageRef;
use sha2::{Digest, Sha256};

use super::{BUSYBOX_REPOSITORY, BaseImageError, RUNTIME_GID, RUNTIME_UID, hash_field, image_ref};
use cameleer_build::java::rootfs::{self, RootFs};

/// Bumped whenever the image recipe changes, so an image built by an older
/// recipe is never reused.
const BUSYBOX_RECIPE: &str = "cameleer-busybox-v1";

/// What goes into the busybox image.
pub(super) struct BusyboxPlan {
    binary: PathBuf,
    applets: Vec<String>,
    libs: BTreeSet<PathBuf>,
    pub(super) reference: ImageRef,
}

impl BusyboxPlan {
    pub(super) fn new() -> Result<BusyboxPlan, BaseImageError> {
        let candidates = ["/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"];
        let binary = candidates
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| BaseImageError::BusyboxNotFound {
                looked: candidates.join(", "),
            })?;
        let list = Command::new(&binary)
            .arg("--list")
            .output()
            .map_err(BaseImageError::io(format!(
                "running {} --list",
                binary.display()
            )))?;
        let applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
            .lines()
            .map(str::trim)
            .filter(|a| {
                !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.[".contains(&b))
            })
            .map(str::to_string)
            .collect();
        // A dynamically linked busybox works too: its libraries come along.
        let libs = rootfs::host_libraries(std::slice::from_ref(&binary), None, &|_| true)?;
        let mut hasher = Sha256::new();
        hash_field(&mut hasher, BUSYBOX_RECIPE.as_bytes());
        rootfs::hash_files(&BTreeSet::from([binary.clone()]), &mut hasher)?;
        rootfs::hash_files(&libs, &mut hasher)?;
        hash_field(&mut hasher, applets.join(",").as_bytes());
        let key = hex::encode(hasher.finalize());
        let reference = image_ref(BUSYBOX_REPOSITORY, &key[..12])?;
        Ok(BusyboxPlan {
            binary,
            applets,
            libs,
            reference,
        })
    }

    pub(super) fn changes(&self) -> Vec<String> {
        vec![
            "ENV PATH=/bin".to_string(),
            format!("USER {RUNTIME_UID}:{RUNTIME_GID}"),
            "CMD [\"/bin/sh\"]".to_string(),
        ]
    }

    pub(super) fn write_rootfs(&self, tar: &Path) -> Result<(), BaseImageError> {
        let mut fs = RootFs::skeleton();
        fs.add_host_file("/bin/busybox", &self.binary, 0o755);
        for applet in &self.applets {
            if applet != "busybox" {
                fs.add_symlink(&format!("/bin/{applet}"), "busybox");
            }
        }
        for lib in &self.libs {
            fs.add_host_file(&lib.to_string_lossy(), lib, 0o755);
        }
        let file = std::fs::File::create(tar)
            .map_err(BaseImageError::io(format!("creating {}", tar.display())))?;
        Ok(fs.write_tar(io::BufWriter::new(file))?)
    }
}
