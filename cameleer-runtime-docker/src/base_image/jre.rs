//! The JRE image: `jlink` of the machine's JDK plus the host files it needs.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use cameleer_build::ImageRef;
use cameleer_build::java::{self, Jdk, JdkError};
use sha2::{Digest, Sha256};

use super::rootfs::{self, RootFs};
use super::{
    BaseImageError, JAVA_HOME_IN_IMAGE, JlinkRecipe, RUNTIME_GID, RUNTIME_UID, hash_field,
    image_ref,
};

/// Bumped whenever the image recipe changes, so an image built by an older
/// recipe is never reused.
const JRE_RECIPE: &str = "cameleer-jre-v1";

const JLINK_FLAGS: &[&str] = &[
    "--strip-debug",
    "--no-header-files",
    "--no-man-pages",
    "--compress=2",
];

/// Native libraries of `java.desktop` that only a JVM with a display loads
/// (X11, sound, splash screen). Containers run headless (no `DISPLAY`), so
/// they and the X11 and ALSA libraries they link are left out.
const GUI_LIBRARIES: &[&str] = &[
    "libawt_xawt.so",
    "libjawt.so",
    "libsplashscreen.so",
    "libjsound.so",
];

/// Libraries without which the JVM cannot start: a library they need that
/// the host lacks is an error, not a warning.
const ESSENTIAL_LIBRARIES: &[&str] = &[
    "java",
    "libjvm.so",
    "libjli.so",
    "libjava.so",
    "libjimage.so",
    "libzip.so",
    "libnet.so",
    "libnio.so",
    "libverify.so",
];

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// glibc's C.UTF-8 locale. glibc does not build it in: without these files
/// `LANG=C.UTF-8` falls back to ASCII, and the JVM with it (`file.encoding`
/// and `sun.jnu.encoding` become `ANSI_X3.4-1968`, mangling non-ASCII file
/// names and console output).
const UTF8_LOCALE: &str = "/usr/lib/locale/C.utf8";

/// The plan for `recipe`, computed once per process: the content key costs
/// an `ldd` over the JDK and hashing its libraries (over half a second),
/// which every `ensure_base_image` call would otherwise pay.
pub(super) fn plan(recipe: &JlinkRecipe) -> Result<Arc<JrePlan>, BaseImageError> {
    static PLANS: Mutex<Vec<(JlinkRecipe, Arc<JrePlan>)>> = Mutex::new(Vec::new());
    let mut plans = PLANS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, plan)) = plans.iter().find(|(r, _)| r == recipe) {
        return Ok(plan.clone());
    }
    let plan = Arc::new(JrePlan::new(recipe)?);
    plans.push((recipe.clone(), plan.clone()));
    Ok(plan)
}

/// What goes into the JRE image, and the content key that names it.
pub(super) struct JrePlan {
    jdk: Jdk,
    modules: Vec<String>,
    pub(super) reference: ImageRef,
}

impl JrePlan {
    pub(super) fn new(recipe: &JlinkRecipe) -> Result<JrePlan, BaseImageError> {
        let jdk = match &recipe.jdk_home {
            Some(home) => Jdk::at(home)?,
            None => Jdk::locate()?,
        };
        if !jdk.can_jlink() {
            return Err(JdkError::Invalid {
                home: jdk.home().to_path_buf(),
                reason: "it has no bin/jlink or no jmods/java.base.jmod (install the full JDK, e.g. openjdk-17-jdk-headless)".into(),
            }
            .into());
        }
        if recipe.modules.is_empty() {
            return Err(BaseImageError::InvalidConfig {
                field: "modules".into(),
                reason: "at least one module is needed".into(),
            });
        }
        let mut modules = BTreeSet::new();
        for (i, module) in recipe.modules.iter().enumerate() {
            let valid = module.split('.').all(|part| {
                part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            if !valid
                || !jdk
                    .home()
                    .join("jmods")
                    .join(format!("{module}.jmod"))
                    .is_file()
            {
                return Err(BaseImageError::InvalidConfig {
                    field: format!("modules[{i}]"),
                    reason: format!(
                        "{module:?} is not a module of the JDK at {}",
                        jdk.home().display()
                    ),
                });
            }
            modules.insert(module.clone());
        }
        let modules: Vec<String> = modules.into_iter().collect();

        let mut hasher = Sha256::new();
        hash_field(&mut hasher, JRE_RECIPE.as_bytes());
        hash_field(&mut hasher, jdk.release_file().as_bytes());
        hash_field(&mut hasher, modules.join(",").as_bytes());
        hash_field(&mut hasher, JLINK_FLAGS.join(" ").as_bytes());
        // The image gets a subset of the JDK's native code, so the libraries
        // the whole JDK links are a superset of the image's: any host change
        // that could alter the image changes the key (without running jlink).
        let jdk_binaries = jdk_native_files(jdk.home())?;
        let host_libs = rootfs::host_libraries(&jdk_binaries, Some(jdk.home()), &|_| false)?;
        rootfs::hash_files(&host_libs, &mut hasher)?;
        let ca = Path::new(CA_BUNDLE);
        if ca.is_file() {
            rootfs::hash_files(&BTreeSet::from([ca.to_path_buf()]), &mut hasher)?;
        }
        let locale = Path::new(UTF8_LOCALE);
        if locale.is_dir() {
            let mut files = Vec::new();
            rootfs::collect_files(locale, &mut files)?;
            rootfs::hash_files(&files.into_iter().collect(), &mut hasher)?;
        } else {
            tracing::warn!(
                path = UTF8_LOCALE,
                "no C.UTF-8 locale on this host; the JVM in the image will default to ASCII"
            );
        }
        let key = hex::encode(hasher.finalize());
        let reference = image_ref(
            &recipe.repository,
            &format!("{}-{}", jdk.major(), &key[..12]),
        )?;
        Ok(JrePlan {
            jdk,
            modules,
            reference,
        })
    }

    pub(super) fn changes(&self) -> Vec<String> {
        vec![
            format!("ENV JAVA_HOME={JAVA_HOME_IN_IMAGE}"),
            format!("ENV PATH={JAVA_HOME_IN_IMAGE}/bin:/usr/local/bin:/usr/bin:/bin"),
            // glibc ≥ 2.35 has C.UTF-8 built in; without it the JVM would
            // default to ASCII for file names and console output.
            "ENV LANG=C.UTF-8".to_string(),
            format!("USER {RUNTIME_UID}:{RUNTIME_GID}"),
            format!("CMD [\"{JAVA_HOME_IN_IMAGE}/bin/java\", \"-version\"]"),
        ]
    }

    /// Links the JRE and writes the image's root filesystem tar to `tar`.
    pub(super) fn write_rootfs(&self, tar: &Path) -> Result<(), BaseImageError> {
        let work = tar.parent().unwrap_or(Path::new("."));
        let jre = work.join("jre");
        let mut jlink = Command::new(self.jdk.tool("jlink"));
        jlink
            .arg("--add-modules")
            .arg(self.modules.join(","))
            .args(JLINK_FLAGS)
            .arg("--output")
            .arg(&jre);
        java::run_tool("jlink", &self.reference.to_string(), &mut jlink)?;
        for lib in GUI_LIBRARIES {
            let path = jre.join("lib").join(lib);
            if path.exists() {
                std::fs::remove_file(&path)
                    .map_err(BaseImageError::io(format!("removing {}", path.display())))?;
            }
        }

        let mut fs = RootFs::skeleton();
        fs.add_tree(&jre, JAVA_HOME_IN_IMAGE)?;
        let binaries = jdk_native_files(&jre)?;
        let essential = |p: &Path| {
            p.file_name()
                .is_some_and(|n| ESSENTIAL_LIBRARIES.iter().any(|e| n == *e))
        };
        for lib in rootfs::host_libraries(&binaries, Some(&jre), &essential)? {
            let path = lib.to_string_lossy();
            fs.add_host_file(&path, &lib, 0o755);
        }
        if Path::new(CA_BUNDLE).is_file() {
            fs.add_host_file(CA_BUNDLE, Path::new(CA_BUNDLE), 0o644);
        }
        if Path::new(UTF8_LOCALE).is_dir() {
            fs.add_tree(Path::new(UTF8_LOCALE), UTF8_LOCALE)?;
        }
        let file = std::fs::File::create(tar)
            .map_err(BaseImageError::io(format!("creating {}", tar.display())))?;
        fs.write_tar(io::BufWriter::new(file))
    }
}

/// `bin/*` and every `.so` under `lib` of a JDK or JRE tree, without the
/// GUI libraries.
fn jdk_native_files(home: &Path) -> Result<Vec<PathBuf>, BaseImageError> {
    let mut files = Vec::new();
    let bin = home.join("bin");
    for entry in
        std::fs::read_dir(&bin).map_err(BaseImageError::io(format!("reading {}", bin.display())))?
    {
        let path = entry
            .map_err(BaseImageError::io(format!("reading {}", bin.display())))?
            .path();
        if path.is_file() {
            files.push(path);
        }
    }
    let mut libs = Vec::new();
    rootfs::collect_files(&home.join("lib"), &mut libs)?;
    files.extend(
        libs.into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "so")),
    );
    files.retain(|f| {
        f.file_name()
            .is_none_or(|n| !GUI_LIBRARIES.iter().any(|g| n == *g))
    });
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_module_is_rejected_naming_it() {
        let recipe = JlinkRecipe {
            modules: vec!["java.se".into(), "no.such.module".into()],
            ..JlinkRecipe::default()
        };
        let Err(err) = JrePlan::new(&recipe) else {
            panic!("accepted an unknown module");
        };
        assert_eq!(err.code(), "base_image_config_invalid");
        assert!(err.to_string().contains("modules[1]"), "{err}");
        assert!(err.to_string().contains("no.such.module"), "{err}");
    }

    #[test]
    fn a_bad_repository_is_rejected() {
        let recipe = JlinkRecipe {
            repository: "Not/Valid".into(),
            ..JlinkRecipe::default()
        };
        let Err(err) = JrePlan::new(&recipe) else {
            panic!("accepted a bad repository");
        };
        assert_eq!(err.code(), "base_image_config_invalid");
    }

    #[test]
    fn the_jre_key_is_stable_and_names_the_java_major() {
        let a = JrePlan::new(&JlinkRecipe::default()).unwrap();
        let b = JrePlan::new(&JlinkRecipe::default()).unwrap();
        assert_eq!(a.reference, b.reference);
        let tag = a.reference.tag().unwrap();
        assert!(tag.starts_with(&format!("{}-", a.jdk.major())), "{tag}");
        assert_eq!(tag.len(), format!("{}-", a.jdk.major()).len() + 12);
        let fewer = JrePlan::new(&JlinkRecipe {
            modules: vec!["java.base".into()],
            ..JlinkRecipe::default()
        })
        .unwrap();
        assert_ne!(a.reference, fewer.reference);
    }
}
