//! The security and compatibility scan, run on every entry as it streams
//! past: manifests, class-file versions, log4j, and nested JARs (scanned
//! recursively from the outer entry's bytes, never held whole).

mod log4j;
pub(crate) mod offload;

use std::io::Read;

use crate::ValidationError;
use crate::manifest::Manifest;
use crate::report::{Finding, FindingKind};
use crate::zip::input::{Input, MIN_BUFFER};
use crate::zip::walker::{ArchiveContext, EntryMeta, EntryVisitor, Walked, walk};

/// Most bytes of a manifest read; its main section must fit.
const MANIFEST_CAP: u64 = 1 << 20;
/// Most bytes of a `pom.properties` read.
const PROPERTIES_CAP: u64 = 64 << 10;
/// `META-INF/MANIFEST.MF`.
pub(crate) const MANIFEST_NAME: &str = "META-INF/MANIFEST.MF";

/// What one archive (the upload or a nested JAR) turned out to hold.
#[derive(Debug)]
pub(crate) struct ArchiveReport {
    /// The walk's facts (prefix, names).
    pub walked: Walked,
    /// The parsed main section of the manifest, or why it failed to parse.
    pub manifest: Option<Result<Manifest, String>>,
    /// Highest class-file major version seen here and below.
    pub max_class_version: Option<u16>,
    /// Findings here and below.
    pub findings: Vec<Finding>,
    /// `META-INF/quarkus*` or `io/quarkus/` entries exist here.
    pub quarkus_entries: bool,
    /// A `META-INF/*.SF` signature file of this archive.
    pub signature_file: Option<String>,
}

/// Walks one archive and scans each entry.
pub(crate) fn scan_archive<R: Read>(
    input: &mut Input<R>,
    ctx: &ArchiveContext<'_>,
    allow_prefix: bool,
) -> Result<ArchiveReport, ValidationError> {
    let mut scan = ArchiveScan {
        ctx,
        manifest: None,
        pom_version: None,
        jndi_lookups: Vec::new(),
        max_class_version: None,
        findings: Vec::new(),
        quarkus_entries: false,
        signature_file: None,
        nested: Vec::new(),
    };
    match walk(input, ctx, allow_prefix, &mut scan) {
        Ok(walked) => scan.finish(walked),
        // A nested JAR scanned in parallel came earlier; its error first.
        Err(e) => Err(scan.first_nested_error().unwrap_or(e)),
    }
}

/// A nested JAR's report: ready (scanned inline) or coming from the worker.
enum Nested {
    Ready(ArchiveReport),
    Pending(offload::Report),
}

impl Nested {
    fn wait(self) -> Result<ArchiveReport, ValidationError> {
        match self {
            Nested::Ready(r) => Ok(r),
            Nested::Pending(rx) => rx.recv().unwrap_or_else(|_| {
                Err(ValidationError::Io(std::io::Error::other(
                    "the nested-archive worker stopped",
                )))
            }),
        }
    }
}

struct ArchiveScan<'c> {
    ctx: &'c ArchiveContext<'c>,
    manifest: Option<Result<Manifest, String>>,
    pom_version: Option<String>,
    jndi_lookups: Vec<String>,
    max_class_version: Option<u16>,
    findings: Vec<Finding>,
    quarkus_entries: bool,
    signature_file: Option<String>,
    /// Nested JAR reports, in entry order.
    nested: Vec<Nested>,
}

impl EntryVisitor for ArchiveScan<'_> {
    fn visit(&mut self, entry: &EntryMeta<'_>, data: &mut dyn Read) -> Result<(), ValidationError> {
        let name = entry.name;
        if name.starts_with("META-INF/quarkus") || name.starts_with("io/quarkus/") {
            self.quarkus_entries = true;
        }
        if let Some(file) = name.strip_prefix("META-INF/")
            && !file.contains('/')
            && file.to_ascii_uppercase().ends_with(".SF")
        {
            self.signature_file
                .get_or_insert_with(|| entry.path.to_owned());
        }
        if name.eq_ignore_ascii_case(MANIFEST_NAME) {
            let text = read_capped(data, MANIFEST_CAP)?;
            self.manifest = Some(Manifest::parse(&text));
        } else if name == log4j::POM_PROPERTIES {
            let text = read_capped(data, PROPERTIES_CAP)?;
            self.pom_version = log4j::pom_version(&text);
        } else if name.ends_with(".class") {
            if log4j::is_jndi_lookup(name) {
                self.jndi_lookups.push(entry.path.to_owned());
            }
            self.check_class(entry, data)?;
        } else if is_jar(name) {
            self.scan_nested(entry, data)?;
        }
        Ok(())
    }
}

impl ArchiveScan<'_> {
    /// Reads the class-file header (magic, minor, major) and holds the major
    /// version against the target release. Classes under
    /// `META-INF/versions/N/` with N above the release are never loaded by
    /// it and are skipped. Files without the magic are resources, not
    /// classes, and are ignored.
    fn check_class(
        &mut self,
        entry: &EntryMeta<'_>,
        data: &mut dyn Read,
    ) -> Result<(), ValidationError> {
        let policy = self.ctx.policy;
        if let Some(rest) = entry.name.strip_prefix("META-INF/versions/") {
            let version = rest.split('/').next().and_then(|v| v.parse::<u16>().ok());
            if version.is_some_and(|v| v > policy.java_release) {
                return Ok(());
            }
        }
        let mut head = [0u8; 8];
        if read_up_to(data, &mut head)? < head.len() || head[..4] != [0xCA, 0xFE, 0xBA, 0xBE] {
            return Ok(());
        }
        let major = u16::from_be_bytes([head[6], head[7]]);
        self.max_class_version = self.max_class_version.max(Some(major));
        let max = policy.max_class_major();
        if major > max {
            return Err(ValidationError::UnsupportedClassVersion {
                entry: entry.path.to_owned(),
                major,
                release: policy.java_release,
                max,
            });
        }
        Ok(())
    }

    /// Scans a nested JAR from the outer entry's bytes as they inflate.
    fn scan_nested(
        &mut self,
        entry: &EntryMeta<'_>,
        data: &mut dyn Read,
    ) -> Result<(), ValidationError> {
        let ctx = self.ctx;
        let limit = ctx.policy.limits.max_nesting_depth;
        if ctx.depth >= limit {
            return Err(ValidationError::NestingTooDeep {
                name: entry.path.to_owned(),
                limit,
            });
        }
        if let Some(submission) = ctx.offload.and_then(|o| o.try_submit(entry.path)) {
            offload::feed(data, submission.chunks)?;
            self.nested.push(Nested::Pending(submission.report));
            return Ok(());
        }
        let child = ArchiveContext {
            policy: ctx.policy,
            budget: ctx.budget,
            path: entry.path.to_owned(),
            depth: ctx.depth + 1,
            offload: None,
        };
        let mut input = Input::new(data, MIN_BUFFER, u64::MAX, false);
        let report = scan_archive(&mut input, &child, false)?;
        self.nested.push(Nested::Ready(report));
        Ok(())
    }

    /// The first error among nested JARs scanned in parallel, waiting for
    /// them in entry order.
    fn first_nested_error(&mut self) -> Option<ValidationError> {
        self.nested.drain(..).find_map(|n| n.wait().err())
    }

    /// Judges log4j once the whole archive is known.
    fn finish(mut self, walked: Walked) -> Result<ArchiveReport, ValidationError> {
        for nested in std::mem::take(&mut self.nested) {
            let report = nested.wait()?;
            self.max_class_version = self.max_class_version.max(report.max_class_version);
            self.findings.extend(report.findings);
        }
        if let Some(first) = self.jndi_lookups.first() {
            let manifest_version = match &self.manifest {
                Some(Ok(m)) => log4j::manifest_version(m),
                _ => None,
            };
            let version = self
                .pom_version
                .take()
                .or(manifest_version)
                .or_else(|| log4j::file_name_version(&self.ctx.path));
            let advice = "upgrade to log4j-core 2.17.1 or later (2.12.4 on Java 7, 2.3.2 on Java 6), \
                          or remove JndiLookup.class";
            match version.as_deref().map(|v| (v, log4j::is_vulnerable(v))) {
                Some((v, Some(true))) => {
                    return Err(ValidationError::VulnerableDependency {
                        entry: first.clone(),
                        reason: format!(
                            "log4j-core {v} is exposed to Log4Shell (CVE-2021-44228); {advice}"
                        ),
                    });
                }
                Some((_, Some(false))) => {}
                _ if self.ctx.policy.reject_unversioned_jndi_lookup => {
                    return Err(ValidationError::VulnerableDependency {
                        entry: first.clone(),
                        reason: format!(
                            "JndiLookup.class is present and the log4j-core version cannot be determined \
                             (no pom.properties, manifest version or versioned file name); {advice}"
                        ),
                    });
                }
                _ => self.findings.push(Finding::new(
                    FindingKind::UnversionedJndiLookup,
                    Some(first.clone()),
                    "JndiLookup.class is present and the log4j-core version cannot be determined",
                )),
            }
        }
        Ok(ArchiveReport {
            walked,
            manifest: self.manifest,
            max_class_version: self.max_class_version,
            findings: self.findings,
            quarkus_entries: self.quarkus_entries,
            signature_file: self.signature_file,
        })
    }
}

/// `*.jar`, any case, not a directory.
fn is_jar(name: &str) -> bool {
    name.len() > 4 && name.as_bytes()[name.len() - 4..].eq_ignore_ascii_case(b".jar")
}

/// Reads at most `cap` bytes.
fn read_capped(data: &mut dyn Read, cap: u64) -> Result<Vec<u8>, ValidationError> {
    let mut out = Vec::new();
    data.take(cap)
        .read_to_end(&mut out)
        .map_err(ValidationError::from_io)?;
    Ok(out)
}

/// Fills `buf` as far as the data goes; returns how much was read.
fn read_up_to(data: &mut dyn Read, buf: &mut [u8]) -> Result<usize, ValidationError> {
    let mut n = 0;
    while n < buf.len() {
        match data.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ValidationError::from_io(e)),
        }
    }
    Ok(n)
}
