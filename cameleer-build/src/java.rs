//! The machine's JDK: finding it, and compiling Java sources into cached JARs.
//!
//! Available with the `java` cargo feature. It runs the JDK's tools
//! (`javac`, `jar`, and `jlink` for the Docker backend's base image) with
//! `std::process`; it needs no container engine.
//!
//! Test fixtures, the demo agent and the locally built base image all come
//! from the JDK installed on the machine, because nothing can be pulled from a
//! registry. Compiling is slow next to a test, so every JAR is cached under
//! [`cache_dir`], keyed by the SHA-256 of everything that goes into it (the
//! JDK's `release` file, the sources, the manifest): a second run, or a
//! second test in the same run, finds the JAR and does no work. Results are
//! written to a temporary file and renamed into place, so a concurrent reader
//! never sees half a JAR.
//!
//! - [`agent`]: the demo agent, which the example server ships when no agent
//!   JAR is configured;
//! - [`jre`]: the JRE base every image runs on (`jlink`, the host libraries
//!   it links, a minimal root file system from [`rootfs`]), keyed by
//!   content; as a tar for `docker import` or as a cached OCI layer;
//! - `fixtures` (cargo feature `fixtures`): the Java apps the tests and
//!   benchmarks deploy.
//!
//! # Examples
//!
//! ```no_run
//! use cameleer_build::java;
//!
//! let jar = java::compile_jar(
//!     "hello",
//!     &[("demo/Hello.java", "package demo; public class Hello { public static void main(String[] a) { System.out.println(\"hi\"); } }")],
//!     &[("Main-Class", "demo.Hello")],
//! )?;
//! assert!(jar.exists());
//! # Ok::<(), cameleer_build::java::JdkError>(())
//! ```

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub mod agent;
mod cache;
#[cfg(feature = "fixtures")]
pub mod fixtures;
mod inputs;
pub mod jre;
pub mod rootfs;

pub use cache::{cache_dir, scratch_dir};
use inputs::{manifest_text, validate_name, validate_sources};

/// The Java release fixtures and agents are compiled for (`javac --release`).
pub const JAVA_RELEASE: u32 = 17;

/// Bumped whenever the way a JAR is produced changes, so old cache entries
/// are never mistaken for new ones.
const JAR_RECIPE: &str = "cameleer-jar-v1";

/// A fixed timestamp for JAR entries, so the same inputs give the same bytes
/// (and so the same image layers) on every machine.
const JAR_DATE: &str = "2000-01-01T00:00:00Z";

/// The most output of a failed tool kept in an error.
const MAX_TOOL_OUTPUT: usize = 8 * 1024;

/// Why the JDK could not be found or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JdkError {
    /// No JDK was found in any of the places looked at.
    #[error("no JDK found (looked at {looked}); install a JDK {JAVA_RELEASE}+ or set JAVA_HOME")]
    NotFound {
        /// The places looked at, for the message.
        looked: String,
    },
    /// A directory was named as the JDK but lacks something we need.
    #[error("{} is not a usable JDK: {reason}", home.display())]
    Invalid {
        /// The directory.
        home: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The JDK is older than [`JAVA_RELEASE`].
    #[error("the JDK at {} is Java {major}; Java {JAVA_RELEASE} or newer is required", home.display())]
    TooOld {
        /// The JDK's home.
        home: PathBuf,
        /// Its feature release.
        major: u32,
    },
    /// A name, source path or manifest entry given to [`compile_jar`] is not acceptable.
    #[error("invalid JAR input {field}: {reason}")]
    InvalidInput {
        /// The offending input, e.g. `sources[2].path` or `manifest.Main-Class`.
        field: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `javac`, `jar` or `jlink` ran and failed.
    #[error("{tool} failed for {subject} ({status}): {output}")]
    ToolFailed {
        /// The tool.
        tool: &'static str,
        /// What it was working on (a JAR name, an image).
        subject: String,
        /// How it ended.
        status: String,
        /// Its stderr and stdout, cut to 8 KiB.
        output: String,
    },
    /// The cache directory would be shared with other users.
    #[error("cache directory {} is unsafe: {reason}", path.display())]
    UnsafeCacheDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file, or starting a tool, failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl JdkError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            JdkError::NotFound { .. } => "jdk_not_found",
            JdkError::Invalid { .. } => "jdk_invalid",
            JdkError::TooOld { .. } => "jdk_too_old",
            JdkError::InvalidInput { .. } => "jar_input_invalid",
            JdkError::ToolFailed { .. } => "jdk_tool_failed",
            JdkError::UnsafeCacheDir { .. } => "cache_dir_unsafe",
            JdkError::Io { .. } => "jdk_io",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> JdkError {
        let context = context.into();
        move |source| JdkError::Io { context, source }
    }

    fn input(field: impl Into<String>, reason: impl Into<String>) -> JdkError {
        JdkError::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A JDK on this machine, at least Java [`JAVA_RELEASE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jdk {
    home: PathBuf,
    release: String,
    version: String,
    major: u32,
}

impl Jdk {
    /// Finds the JDK: `$JAVA_HOME` when set (an unusable `JAVA_HOME` is an
    /// error, not a reason to look elsewhere), else the first usable
    /// `/usr/lib/jvm/*17*`, else the JDK that `javac` on `PATH` belongs to.
    pub fn locate() -> Result<Jdk, JdkError> {
        if let Some(home) = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
            return Jdk::at(home);
        }
        let mut looked = vec!["$JAVA_HOME (unset)".to_string()];
        let mut candidates = BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir("/usr/lib/jvm") {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().contains("17")
                    && let Ok(canonical) = entry.path().canonicalize()
                {
                    candidates.insert(canonical);
                }
            }
        }
        looked.push("/usr/lib/jvm/*17*".into());
        for home in candidates {
            if let Ok(jdk) = Jdk::at(&home) {
                return Ok(jdk);
            }
        }
        looked.push("javac on PATH".into());
        if let Some(javac) = find_on_path("javac")
            && let Some(home) = javac
                .canonicalize()
                .ok()
                .and_then(|p| Some(p.parent()?.parent()?.to_path_buf()))
        {
            return Jdk::at(home);
        }
        Err(JdkError::NotFound {
            looked: looked.join(", "),
        })
    }

    /// The JDK at `home`, checked to have `javac` and `jar` and to be at least
    /// Java [`JAVA_RELEASE`].
    pub fn at(home: impl Into<PathBuf>) -> Result<Jdk, JdkError> {
        let home = home.into();
        let invalid = |reason: String| JdkError::Invalid {
            home: home.clone(),
            reason,
        };
        let release = std::fs::read_to_string(home.join("release"))
            .map_err(|e| invalid(format!("cannot read its release file: {e}")))?;
        let version = release_value(&release, "JAVA_VERSION")
            .ok_or_else(|| invalid("its release file has no JAVA_VERSION".into()))?
            .to_string();
        let major = feature_release(&version)
            .ok_or_else(|| invalid(format!("cannot parse JAVA_VERSION {version:?}")))?;
        for tool in ["java", "javac", "jar"] {
            if !home.join("bin").join(tool).is_file() {
                return Err(invalid(format!("bin/{tool} is missing")));
            }
        }
        if major < JAVA_RELEASE {
            return Err(JdkError::TooOld { home, major });
        }
        Ok(Jdk {
            home,
            release,
            version,
            major,
        })
    }

    /// The JDK's home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `JAVA_VERSION` from the `release` file, e.g. `17.0.15`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The feature release, e.g. `17`.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The whole `release` file: identifies the build exactly, so it keys caches.
    pub fn release_file(&self) -> &str {
        &self.release
    }

    /// The path of a tool in the JDK's `bin`, e.g. `jlink`.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.home.join("bin").join(name)
    }

    /// Whether the JDK can `jlink` a runtime: it has `bin/jlink` and the
    /// packaged modules in `jmods`.
    pub fn can_jlink(&self) -> bool {
        self.tool("jlink").is_file() && self.home.join("jmods/java.base.jmod").is_file()
    }

    /// Compiles `sources` (pairs of a path such as `demo/Hello.java` and its
    /// text) with `javac --release 17` and packs them with `manifest` into a
    /// JAR named `<name>-<key>.jar` in the cache; returns its path.
    ///
    /// The same inputs return the cached JAR without running anything.
    pub fn compile_jar(
        &self,
        name: &str,
        sources: &[(&str, &str)],
        manifest: &[(&str, &str)],
    ) -> Result<PathBuf, JdkError> {
        validate_name(name)?;
        let sources = validate_sources(sources)?;
        let manifest_text = manifest_text(manifest)?;
        let mut hasher = Sha256::new();
        for part in [JAR_RECIPE, &self.release, name, &manifest_text] {
            hash_field(&mut hasher, part.as_bytes());
        }
        for (path, text) in &sources {
            hash_field(&mut hasher, path.as_bytes());
            hash_field(&mut hasher, text.as_bytes());
        }
        let key = hex::encode(hasher.finalize());

        let cache = cache_dir()?;
        let jars = cache.join("jars");
        let target = jars.join(format!("{name}-{}.jar", &key[..16]));
        if target.is_file() {
            return Ok(target);
        }
        std::fs::create_dir_all(&jars)
            .map_err(JdkError::io(format!("creating {}", jars.display())))?;
        let work = scratch_dir(&cache)?;
        let src = work.path().join("src");
        let mut files = Vec::with_capacity(sources.len());
        for (path, text) in &sources {
            let file = src.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(JdkError::io(format!("creating {}", parent.display())))?;
            }
            std::fs::write(&file, text)
                .map_err(JdkError::io(format!("writing {}", file.display())))?;
            files.push(file);
        }
        let classes = work.path().join("classes");
        let mut javac = Command::new(self.tool("javac"));
        javac
            .arg("--release")
            .arg(JAVA_RELEASE.to_string())
            .args(["-encoding", "UTF-8", "-proc:none", "-nowarn", "-d"])
            .arg(&classes)
            .args(&files);
        run_tool("javac", name, &mut javac)?;

        let manifest_file = work.path().join("MANIFEST.MF");
        std::fs::write(&manifest_file, &manifest_text)
            .map_err(JdkError::io(format!("writing {}", manifest_file.display())))?;
        let jar_file = work.path().join("out.jar");
        let mut jar = Command::new(self.tool("jar"));
        jar.arg("--create")
            .arg("--file")
            .arg(&jar_file)
            .arg("--manifest")
            .arg(&manifest_file)
            .arg(format!("--date={JAR_DATE}"))
            .arg("-C")
            .arg(&classes)
            .arg(".");
        run_tool("jar", name, &mut jar)?;
        // Same directory tree, so the rename is atomic: readers see no JAR or the whole JAR.
        std::fs::rename(&jar_file, &target).map_err(JdkError::io(format!(
            "moving the JAR to {}",
            target.display()
        )))?;
        Ok(target)
    }
}

/// Compiles a JAR with the JDK found by [`Jdk::locate`]; see [`Jdk::compile_jar`].
pub fn compile_jar(
    name: &str,
    sources: &[(&str, &str)],
    manifest: &[(&str, &str)],
) -> Result<PathBuf, JdkError> {
    Jdk::locate()?.compile_jar(name, sources, manifest)
}

/// Compiles every `.java` file under `dir` (paths relative to `dir`) into a
/// cached JAR; see [`Jdk::compile_jar`].
pub fn compile_jar_from_dir(
    name: &str,
    dir: &Path,
    manifest: &[(&str, &str)],
) -> Result<PathBuf, JdkError> {
    let mut found = Vec::new();
    collect_java_files(dir, dir, &mut found)?;
    if found.is_empty() {
        return Err(JdkError::input(
            "sources",
            format!("no .java files under {}", dir.display()),
        ));
    }
    let borrowed: Vec<(&str, &str)> = found
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    compile_jar(name, &borrowed, manifest)
}

fn collect_java_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, String)>,
) -> Result<(), JdkError> {
    let entries =
        std::fs::read_dir(dir).map_err(JdkError::io(format!("reading {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(JdkError::io(format!("reading {}", dir.display())))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(JdkError::io(format!("reading {}", path.display())))?;
        if kind.is_dir() {
            collect_java_files(root, &path, out)?;
        } else if kind.is_file() && path.extension() == Some(OsStr::new("java")) {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let relative = relative
                .to_str()
                .ok_or_else(|| {
                    JdkError::input("sources", format!("{} is not UTF-8", path.display()))
                })?
                .to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(JdkError::io(format!("reading {}", path.display())))?;
            out.push((relative, text));
        }
    }
    Ok(())
}

/// Runs a JDK tool (a `Command` built on [`Jdk::tool`]) to completion and
/// returns its stdout; a tool that cannot start is [`JdkError::Io`], one that
/// fails is [`JdkError::ToolFailed`] with its stderr and stdout, cut to
/// 8 KiB. `subject` names what it works on, for the error.
pub fn run_tool(
    tool: &'static str,
    subject: &str,
    command: &mut Command,
) -> Result<Vec<u8>, JdkError> {
    let output = command
        .output()
        .map_err(JdkError::io(format!("starting {tool} for {subject}")))?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    Err(JdkError::ToolFailed {
        tool,
        subject: subject.to_string(),
        status: output.status.to_string(),
        output: truncate(text.trim(), MAX_TOOL_OUTPUT),
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub(crate) fn hash_field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A value of the JDK `release` file (`KEY="value"` lines).
fn release_value<'a>(release: &'a str, key: &str) -> Option<&'a str> {
    release.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// The feature release of a `JAVA_VERSION`: `17.0.15` → 17, `1.8.0_392` → 8.
fn feature_release(version: &str) -> Option<u32> {
    let mut parts = version.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_release_parses_old_and_new_schemes() {
        assert_eq!(feature_release("17.0.15"), Some(17));
        assert_eq!(feature_release("1.8.0_392"), Some(8));
        assert_eq!(feature_release("21"), Some(21));
        assert_eq!(feature_release("25-ea"), Some(25));
        assert_eq!(feature_release("x"), None);
    }

    #[test]
    fn release_values_are_unquoted() {
        let release = "IMPLEMENTOR=\"Debian\"\nJAVA_VERSION=\"17.0.15\"\n";
        assert_eq!(release_value(release, "JAVA_VERSION"), Some("17.0.15"));
        assert_eq!(release_value(release, "MODULES"), None);
    }

    #[test]
    fn an_invalid_jdk_home_is_a_typed_error() {
        let err = Jdk::at("/nonexistent/jdk").unwrap_err();
        assert_eq!(err.code(), "jdk_invalid");
    }
}
