//! `validate_jar`: one pass over an upload, from bytes to a verdict.

use std::io::Read;
use std::sync::atomic::AtomicUsize;

use crate::manifest::Manifest;
use crate::report::{Finding, FindingKind, Runtime, ValidatedJar};
use crate::scan::offload::Worker;
use crate::scan::{ArchiveReport, MANIFEST_NAME, scan_archive};
use crate::zip::entry::Budget;
use crate::zip::input::Input;
use crate::zip::walker::ArchiveContext;
use crate::{ValidationError, ValidationPolicy};

/// Read buffer for the upload.
const BUFFER: usize = 256 << 10;

/// Validates an uploaded JAR in a single forward pass over `reader`.
///
/// The bytes are read once: SHA-256 is computed as they arrive, every entry
/// is inflated (never trusting declared sizes) with its CRC-32 checked,
/// nested JARs are scanned recursively as their bytes come out of the outer
/// entry, and the central directory is cross-checked against what was seen.
/// Small entries whose local header gives their sizes are inflated in one
/// shot by libdeflate, the rest streamed by zlib-rs; the two differences
/// between the paths (padding after a deflate stream within the declared
/// compressed size, and a few malformed Huffman headers zlib refuses) are
/// documented in the crate's `zip/fast.rs`.
/// Memory stays bounded whatever the input: a few 64–256 KiB buffers per
/// archive being scanned, at most 8 MiB queued for the nested-JAR worker,
/// and a record per entry (its name and a few numbers). Only the names grow
/// with the input: at the default limits (65,535 entries of up to 1 KiB per
/// archive, at most five archives open at once) that is a hard ceiling of a
/// few hundred MiB for a hostile upload, and a few MiB for real JARs.
///
/// See [`ValidationError::code`] for the rejections and [`ValidatedJar`] for
/// what an accepted JAR reports.
///
/// # Examples
///
/// ```no_run
/// use cameleer_build::{validate_jar, ValidationPolicy};
///
/// let file = std::fs::File::open("app.jar")?;
/// match validate_jar(std::io::BufReader::new(file), &ValidationPolicy::default()) {
///     Ok(jar) => println!("{} runs {}", jar.sha256, jar.main_class),
///     Err(e) => eprintln!("rejected ({}): {e}", e.code()),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn validate_jar<R: Read>(
    reader: R,
    policy: &ValidationPolicy,
) -> Result<ValidatedJar, ValidationError> {
    let budget = Budget::new(policy.limits.max_total_uncompressed);
    let pending = AtomicUsize::new(0);
    let mut input = Input::new(reader, BUFFER, policy.limits.max_upload_bytes, true);
    let scanned = std::thread::scope(|scope| {
        let worker = Worker::new(scope, policy, &budget, &pending);
        let ctx = ArchiveContext {
            policy,
            budget: &budget,
            path: String::new(),
            depth: 0,
            offload: policy.parallel.then_some(&worker as _),
        };
        scan_archive(&mut input, &ctx, true)
        // Dropping the worker closes its job queue; the scope joins it.
        // It is started only when a nested JAR is handed to it.
    });
    let report = match scanned {
        Ok(report) => report,
        Err(e) => return Err(prefer_checksum_error(e, &mut input, policy)),
    };
    let sha256 = input
        .digest()
        .ok_or_else(|| ValidationError::Io(std::io::Error::other("hash missing")))?;
    if let Some(expected) = policy.expected_sha256
        && expected != sha256
    {
        return Err(ValidationError::ChecksumMismatch {
            expected,
            actual: sha256,
        });
    }
    let size = input.total_read();
    judge(report, sha256, size)
}

/// After an early rejection, a wrong checksum explains more (the transfer
/// was corrupted), so when one was expected the rest is read and hashed.
fn prefer_checksum_error<R: Read>(
    e: ValidationError,
    input: &mut Input<R>,
    policy: &ValidationPolicy,
) -> ValidationError {
    let Some(expected) = policy.expected_sha256 else {
        return e;
    };
    if matches!(e, ValidationError::Io(_) | ValidationError::TooLarge { .. })
        || input.drain().is_err()
    {
        return e;
    }
    match input.digest() {
        Some(actual) if actual != expected => {
            ValidationError::ChecksumMismatch { expected, actual }
        }
        _ => e,
    }
}

/// From the scanned archive to the main class, runtime and findings.
fn judge(
    report: ArchiveReport,
    sha256: crate::Sha256Digest,
    size: u64,
) -> Result<ValidatedJar, ValidationError> {
    let manifest = match report.manifest {
        None => {
            return Err(ValidationError::MissingMainClass(format!(
                "no {MANIFEST_NAME}"
            )));
        }
        Some(Err(reason)) => {
            return Err(ValidationError::InvalidManifest {
                entry: MANIFEST_NAME.into(),
                reason,
            });
        }
        Some(Ok(m)) => m,
    };
    let main = class_attr(&manifest, "Main-Class")?.ok_or_else(|| {
        let hint = if manifest.has_unterminated_last_line() {
            " (its last line has no line end, so the JVM ignores it)"
        } else {
            ""
        };
        ValidationError::MissingMainClass(format!("{MANIFEST_NAME} has no Main-Class{hint}"))
    })?;
    let names = &report.walked.names;
    let class_entry =
        |prefix: &str, class: &str| format!("{prefix}{}.class", class.replace('.', "/"));
    let class_path = manifest.get_trimmed("Class-Path");
    let (runtime, main_class) = if main.starts_with("org.springframework.boot.loader.") {
        let start = class_attr(&manifest, "Start-Class")?.ok_or_else(|| {
            ValidationError::MissingMainClass(format!(
                "{MANIFEST_NAME} names Spring Boot's launcher {main} but no Start-Class"
            ))
        })?;
        let entry = class_entry("BOOT-INF/classes/", &start);
        if !names.contains(entry.as_str()) && !names.contains(class_entry("", &start).as_str()) {
            return Err(ValidationError::MainClassNotFound {
                class: start,
                entry,
            });
        }
        (Runtime::SpringBoot, start)
    } else if main.starts_with("io.quarkus.") || report.quarkus_entries {
        (Runtime::Quarkus, main.clone())
    } else {
        (Runtime::Plain, main.clone())
    };
    // The launcher itself must be there too, unless a Class-Path brings it.
    let entry = class_entry("", &main);
    if class_path.is_none() && !names.contains(entry.as_str()) {
        return Err(ValidationError::MainClassNotFound { class: main, entry });
    }

    let mut findings = Vec::new();
    if report.walked.prefix_len > 0 {
        findings.push(Finding::new(
            FindingKind::LaunchScript,
            None,
            format!(
                "{} bytes of launch script precede the zip data",
                report.walked.prefix_len
            ),
        ));
    }
    if manifest
        .get_trimmed("Multi-Release")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        findings.push(Finding::new(
            FindingKind::MultiRelease,
            Some(MANIFEST_NAME.into()),
            "multi-release JAR",
        ));
    }
    if let Some(sf) = report.signature_file {
        findings.push(Finding::new(
            FindingKind::Signed,
            Some(sf),
            "the JAR is signed",
        ));
    }
    if let Some(cp) = class_path {
        findings.push(Finding::new(
            FindingKind::ClassPath,
            Some(MANIFEST_NAME.into()),
            format!("Class-Path {cp:?} refers to files outside the upload; they will not be in the image"),
        ));
    }
    findings.extend(report.findings);
    Ok(ValidatedJar {
        sha256,
        size,
        main_class,
        runtime,
        max_class_version: report.max_class_version,
        findings,
    })
}

/// A class-name attribute, `/` normalised to `.` as the launcher does, and
/// checked to be a plausible binary name.
fn class_attr(m: &Manifest, attr: &str) -> Result<Option<String>, ValidationError> {
    let Some(v) = m.get_trimmed(attr) else {
        return Ok(None);
    };
    let v = v.replace('/', ".");
    let valid = !v.starts_with('.')
        && !v.ends_with('.')
        && !v.contains("..")
        && v.chars()
            .all(|c| c == '.' || c == '$' || c == '_' || c.is_alphanumeric());
    if !valid {
        return Err(ValidationError::InvalidManifest {
            entry: MANIFEST_NAME.into(),
            reason: format!("{attr} {v:?} is not a class name"),
        });
    }
    Ok(Some(v))
}
