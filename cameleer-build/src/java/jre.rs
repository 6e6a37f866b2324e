//! The JRE every Cameleer image runs on: a `jlink` runtime of the machine's
//! JDK, the host's shared libraries it links, a non-root user, `/tmp`, CA
//! certificates and the C.UTF-8 locale. No container engine involved.
//!
//! A [`JrePlan`] names what goes in and its content key, a SHA-256 over the
//! JDK's `release` file, the module list, the `jlink` flags, the content of
//! every host library the JDK links, the CA bundle, the locale and this
//! recipe's version: the same machine gives the same key, and any change
//! that could alter the runtime changes it. Both image routes use it:
//!
//! - the Docker backend writes [`JrePlan::rootfs`] as a tar for
//!   `docker import` and tags the image with the key;
//! - the daemonless OCI route takes [`base_layer`]: the same tree as one
//!   deterministic gzipped layer, cached under [`cache_dir`](super::cache_dir)
//!   by the key, so it is linked and compressed once per machine.
//!
//! # Examples
//!
//! ```no_run
//! use cameleer_build::java::jre::{self, JrePlan, JreRecipe};
//!
//! let plan = JrePlan::cached(&JreRecipe::default())?;
//! let layer = jre::base_layer(&plan)?;
//! println!("{} ({} bytes)", layer.layer.digest.oci(), layer.layer.size);
//! # Ok::<(), cameleer_build::java::jre::JreError>(())
//! ```

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::rootfs::{self, RootFs};
use super::{Jdk, JdkError};
use crate::Sha256Digest;
use crate::oci::{BlobSource, IMAGE_JAVA_HOME, Layer, LayerBlob, LayerOptions, OciError};

/// The modules of the JRE: the whole Java SE API plus what typical Camel
/// and Spring Boot applications and their agents reach for beyond it. Each
/// addition and why:
///
/// - `java.se`: every standard API (includes `java.instrument` for agents,
///   `java.management`, `java.sql`, `java.naming`, `java.net.http`, XML);
/// - `jdk.unsupported`: `sun.misc.Unsafe`, used by Netty, Kryo, Hazelcast…;
/// - `jdk.crypto.ec`: elliptic-curve TLS cipher suites (most HTTPS today);
/// - `jdk.management`, `jdk.management.agent`: platform MXBeans and remote
///   JMX, which Camel's JMX management and monitoring agents use;
/// - `jdk.jfr`, `jdk.management.jfr`: Flight Recorder for production profiling;
/// - `jdk.zipfs`: the zip file system (Spring Boot tooling, Camel's file
///   components reading archives);
/// - `jdk.localedata`, `jdk.charsets`: non-English locales and the extended
///   charsets (EBCDIC and friends) that mainframe integrations need;
/// - `jdk.naming.dns`: JNDI DNS lookups;
/// - `jdk.net`: extended socket options (TCP keep-alive tuning in Netty);
/// - `jdk.httpserver`: `com.sun.net.httpserver`, used by lightweight
///   health endpoints;
/// - `jdk.security.auth`, `jdk.security.jgss`: JAAS login modules and
///   Kerberos (Kafka SASL/GSSAPI, LDAP);
/// - `jdk.jcmd`: `jcmd`/`jstack`, so an operator can take a thread dump
///   with `docker exec`.
pub const DEFAULT_MODULES: &[&str] = &[
    "java.se",
    "jdk.unsupported",
    "jdk.crypto.ec",
    "jdk.management",
    "jdk.management.agent",
    "jdk.jfr",
    "jdk.management.jfr",
    "jdk.zipfs",
    "jdk.localedata",
    "jdk.charsets",
    "jdk.naming.dns",
    "jdk.net",
    "jdk.httpserver",
    "jdk.security.auth",
    "jdk.security.jgss",
    "jdk.jcmd",
];

/// Bumped whenever the runtime recipe changes, so nothing built by an
/// older recipe is reused (this string is part of the Docker image tags).
const JRE_RECIPE: &str = "cameleer-jre-v2";

/// Bumped whenever the way the OCI base layer is written changes.
const LAYER_RECIPE: &str = "cameleer-jre-layer-v1";

/// `--generate-cds-archive` writes the JDK's default class-data-sharing
/// archive (`lib/server/classes.jsa`) for the linked modules: the JVM maps
/// the pre-parsed JDK classes instead of inflating and verifying them from
/// the compressed `modules` image on every start. A hello world starts in
/// about half the time here (~12 MB more in the layer). JDK 17 does not
/// write the archive byte for byte the same twice, so two machines link
/// different JRE layers for the same key (see `docs/design-changes.md`);
/// the layer is linked once per machine and cached by the key.
const JLINK_FLAGS: &[&str] = &[
    "--strip-debug",
    "--no-header-files",
    "--no-man-pages",
    "--compress=2",
    "--generate-cds-archive",
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

/// The CA bundle copied into the image, when the host has one.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// glibc's C.UTF-8 locale. glibc does not build it in: without these files
/// `LANG=C.UTF-8` falls back to ASCII, and the JVM with it (`file.encoding`
/// and `sun.jnu.encoding` become `ANSI_X3.4-1968`, mangling non-ASCII file
/// names and console output).
pub const UTF8_LOCALE: &str = "/usr/lib/locale/C.utf8";

/// Why the JRE could not be planned, linked or laid out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JreError {
    /// The recipe is invalid (an unknown module, a non-UTF-8 path).
    #[error("invalid base image configuration {field}: {reason}")]
    InvalidConfig {
        /// The offending field, e.g. `modules[3]`.
        field: String,
        /// Why.
        reason: String,
    },
    /// The JDK could not be found or `jlink` failed.
    #[error(transparent)]
    Jdk(#[from] JdkError),
    /// A library the JVM needs is not installed on this host.
    #[error("shared library {library} needed by {needed_by} is not installed on this host")]
    MissingLibrary {
        /// The library's name.
        library: String,
        /// The binary that needs it.
        needed_by: String,
    },
    /// Writing the base layer failed.
    #[error("writing the JRE base layer: {0}")]
    Oci(#[from] OciError),
    /// Reading host files or writing the cache failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl JreError {
    /// A stable, machine-readable code (for [`Jdk`](JreError::Jdk) and
    /// [`Oci`](JreError::Oci), the inner error's own).
    pub fn code(&self) -> &'static str {
        match self {
            JreError::InvalidConfig { .. } => "base_image_config_invalid",
            JreError::Jdk(e) => e.code(),
            JreError::MissingLibrary { .. } => "base_image_library_missing",
            JreError::Oci(e) => e.code(),
            JreError::Io { .. } => "base_image_io",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> JreError {
        let context = context.into();
        move |source| JreError::Io { context, source }
    }
}

/// What JRE to link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JreRecipe {
    /// The JDK to link from; `None` finds it with [`Jdk::locate`].
    pub jdk_home: Option<PathBuf>,
    /// The modules to include (their dependencies come along).
    pub modules: Vec<String>,
}

impl Default for JreRecipe {
    fn default() -> Self {
        JreRecipe {
            jdk_home: None,
            modules: DEFAULT_MODULES.iter().map(|m| m.to_string()).collect(),
        }
    }
}

/// What goes into the JRE, and the content key that names it.
#[derive(Debug, Clone)]
pub struct JrePlan {
    jdk: Jdk,
    modules: Vec<String>,
    key: String,
}

impl JrePlan {
    /// Checks `recipe` against the JDK and computes the content key (an
    /// `ldd` over the JDK and a hash of its libraries: about half a
    /// second).
    pub fn new(recipe: &JreRecipe) -> Result<JrePlan, JreError> {
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
            return Err(JreError::InvalidConfig {
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
                return Err(JreError::InvalidConfig {
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
        super::hash_field(&mut hasher, JRE_RECIPE.as_bytes());
        super::hash_field(&mut hasher, jdk.release_file().as_bytes());
        super::hash_field(&mut hasher, modules.join(",").as_bytes());
        super::hash_field(&mut hasher, JLINK_FLAGS.join(" ").as_bytes());
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
        Ok(JrePlan {
            jdk,
            modules,
            key: hex::encode(hasher.finalize()),
        })
    }

    /// The plan for `recipe`, computed once per process and shared: the
    /// content key costs an `ldd` over the JDK and hashing its libraries,
    /// which every build would otherwise pay.
    pub fn cached(recipe: &JreRecipe) -> Result<Arc<JrePlan>, JreError> {
        static PLANS: Mutex<Vec<(JreRecipe, Arc<JrePlan>)>> = Mutex::new(Vec::new());
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

    /// The JDK it links from.
    pub fn jdk(&self) -> &Jdk {
        &self.jdk
    }

    /// The modules, sorted and without duplicates.
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// The content key: 64 hex characters.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Runs `jlink` into `dest` (which must not exist) and removes the
    /// GUI libraries a headless JVM never loads.
    pub fn link(&self, dest: &Path) -> Result<(), JreError> {
        let mut jlink = Command::new(self.jdk.tool("jlink"));
        jlink
            .arg("--add-modules")
            .arg(self.modules.join(","))
            .args(JLINK_FLAGS)
            .arg("--output")
            .arg(dest);
        super::run_tool("jlink", &format!("the JRE {}", &self.key[..12]), &mut jlink)?;
        for lib in GUI_LIBRARIES {
            let path = dest.join("lib").join(lib);
            if path.exists() {
                std::fs::remove_file(&path)
                    .map_err(JreError::io(format!("removing {}", path.display())))?;
            }
        }
        Ok(())
    }

    /// The root file system around the linked JRE at `jre`: the
    /// [`RootFs::skeleton`], the JRE at [`IMAGE_JAVA_HOME`], the host
    /// libraries it links (an essential one missing is
    /// `base_image_library_missing`), the CA bundle and the C.UTF-8 locale.
    pub fn rootfs(&self, jre: &Path) -> Result<RootFs, JreError> {
        let mut fs = RootFs::skeleton();
        fs.add_tree(jre, IMAGE_JAVA_HOME)?;
        let binaries = jdk_native_files(jre)?;
        let essential = |p: &Path| {
            p.file_name()
                .is_some_and(|n| ESSENTIAL_LIBRARIES.iter().any(|e| n == *e))
        };
        for lib in rootfs::host_libraries(&binaries, Some(jre), &essential)? {
            let path = lib.to_string_lossy();
            fs.add_host_file(&path, &lib, 0o755);
        }
        if Path::new(CA_BUNDLE).is_file() {
            fs.add_host_file(CA_BUNDLE, Path::new(CA_BUNDLE), 0o644);
        }
        if Path::new(UTF8_LOCALE).is_dir() {
            fs.add_tree(Path::new(UTF8_LOCALE), UTF8_LOCALE)?;
        }
        Ok(fs)
    }
}

/// The JRE base of `plan` as one OCI layer ([`JrePlan::rootfs`] with the
/// default [`LayerOptions`]), cached by content under
/// `cache_dir()/layers`: the first call on a machine links and compresses
/// (seconds), later ones, in this process or another, read a small JSON
/// file. The blob is a file ([`BlobSource::File`]); concurrent callers are
/// safe (a lock file, and results renamed into place).
pub fn base_layer(plan: &JrePlan) -> Result<LayerBlob, JreError> {
    let cache = super::cache_dir()?;
    let dir = cache.join("layers");
    std::fs::create_dir_all(&dir).map_err(JreError::io(format!("creating {}", dir.display())))?;
    let mut hasher = Sha256::new();
    super::hash_field(&mut hasher, LAYER_RECIPE.as_bytes());
    super::hash_field(&mut hasher, plan.key.as_bytes());
    let name = format!(
        "jre-{}-{}",
        plan.jdk.major(),
        &hex::encode(hasher.finalize())[..24]
    );
    let blob_path = dir.join(format!("{name}.tar.gz"));
    let meta_path = dir.join(format!("{name}.json"));
    let created_by = format!(
        "cameleer jlink JRE {} ({}) with host libraries",
        plan.jdk.version(),
        plan.modules.join(",")
    );
    if let Some(layer) = read_cached(&meta_path, &blob_path) {
        return Ok(LayerBlob {
            layer,
            source: BlobSource::File(blob_path),
            created_by: Some(created_by),
        });
    }
    let lock_path = dir.join(format!("{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(JreError::io(format!("opening {}", lock_path.display())))?;
    lock.lock()
        .map_err(JreError::io(format!("locking {}", lock_path.display())))?;
    if let Some(layer) = read_cached(&meta_path, &blob_path) {
        return Ok(LayerBlob {
            layer,
            source: BlobSource::File(blob_path),
            created_by: Some(created_by),
        });
    }
    let work = super::scratch_dir(&cache)?;
    let jre = work.path().join("jre");
    plan.link(&jre)?;
    let tmp_blob = work.path().join("layer.tar.gz");
    let blob = plan
        .rootfs(&jre)?
        .to_layer(LayerOptions::default())?
        .write_file(&tmp_blob)?;
    std::fs::rename(&tmp_blob, &blob_path).map_err(JreError::io(format!(
        "moving the layer to {}",
        blob_path.display()
    )))?;
    let meta = serde_json::json!({
        "diff_id": blob.layer.diff_id.oci(),
        "digest": blob.layer.digest.oci(),
        "size": blob.layer.size,
        "uncompressed_size": blob.layer.uncompressed_size,
    });
    let tmp_meta = work.path().join("layer.json");
    std::fs::write(&tmp_meta, meta.to_string())
        .map_err(JreError::io(format!("writing {}", tmp_meta.display())))?;
    // The JSON last: its presence says the blob next to it is complete.
    std::fs::rename(&tmp_meta, &meta_path)
        .map_err(JreError::io(format!("moving {}", meta_path.display())))?;
    Ok(LayerBlob {
        layer: blob.layer,
        source: BlobSource::File(blob_path),
        created_by: Some(created_by),
    })
}

/// The cached layer's digests, when both files are there and the blob has
/// the recorded size.
fn read_cached(meta_path: &Path, blob_path: &Path) -> Option<Layer> {
    let text = std::fs::read_to_string(meta_path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let digest = |k: &str| v.get(k)?.as_str()?.parse::<Sha256Digest>().ok();
    let layer = Layer {
        diff_id: digest("diff_id")?,
        digest: digest("digest")?,
        size: v.get("size")?.as_u64()?,
        uncompressed_size: v.get("uncompressed_size")?.as_u64()?,
    };
    let on_disk = std::fs::metadata(blob_path).ok()?;
    (on_disk.is_file() && on_disk.len() == layer.size).then_some(layer)
}

/// `bin/*` and every `.so` under `lib` of a JDK or JRE tree, without the
/// GUI libraries.
fn jdk_native_files(home: &Path) -> Result<Vec<PathBuf>, JreError> {
    let mut files = Vec::new();
    let bin = home.join("bin");
    for entry in
        std::fs::read_dir(&bin).map_err(JreError::io(format!("reading {}", bin.display())))?
    {
        let path = entry
            .map_err(JreError::io(format!("reading {}", bin.display())))?
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
        let recipe = JreRecipe {
            modules: vec!["java.se".into(), "no.such.module".into()],
            ..JreRecipe::default()
        };
        let err = JrePlan::new(&recipe).unwrap_err();
        assert_eq!(err.code(), "base_image_config_invalid");
        assert!(err.to_string().contains("modules[1]"), "{err}");
        assert!(err.to_string().contains("no.such.module"), "{err}");
    }

    #[test]
    fn the_key_is_stable_and_changes_with_the_modules() {
        let a = JrePlan::new(&JreRecipe::default()).unwrap();
        let b = JrePlan::new(&JreRecipe::default()).unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().len(), 64);
        let fewer = JrePlan::new(&JreRecipe {
            modules: vec!["java.base".into()],
            ..JreRecipe::default()
        })
        .unwrap();
        assert_ne!(a.key(), fewer.key());
    }
}
