//! Why an uploaded JAR is rejected.

use std::io;

/// Why a JAR was rejected.
///
/// Every variant has a stable, snake_case [`code`](ValidationError::code) that
/// hosts can match on and show to users; the message names the offending
/// entry. Entries inside nested archives are named with `!/` separators, the
/// way the JVM names them: `BOOT-INF/lib/a.jar!/META-INF/MANIFEST.MF`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The upload has no bytes, or is a zip archive without entries.
    #[error("empty: {0}")]
    Empty(String),
    /// No zip local file header was found at the start of the upload (or
    /// after a launch script within the allowed prefix).
    #[error("not a zip archive: {0}")]
    NotAZip(String),
    /// The upload ended in the middle of the archive.
    #[error("truncated archive: {0}")]
    Truncated(String),
    /// The upload is larger than the policy allows.
    #[error("the upload exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The archive structure is broken: an unknown record, a corrupt
    /// deflate stream, bad extra fields, bytes after the end record.
    #[error("malformed archive: {0}")]
    Malformed(String),
    /// An entry name escapes the archive or cannot be represented safely:
    /// `..` components, absolute paths, backslashes, drive letters, control
    /// characters, invalid UTF-8.
    #[error("invalid entry name {name:?}: {reason}")]
    InvalidEntryName {
        /// The name, lossily decoded.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry name is longer than the policy allows.
    #[error("entry name too long ({len} bytes, limit {limit}): {name:?}")]
    EntryNameTooLong {
        /// The name, lossily decoded and cut to 200 characters.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// An entry is a symbolic link (unix mode `S_IFLNK`).
    #[error("symbolic link entry {0:?}")]
    SymlinkEntry(String),
    /// Two entries have the same name.
    #[error("duplicate entry {0:?}")]
    DuplicateEntry(String),
    /// The central directory or end record disagrees with the local headers
    /// (name, sizes, CRC, method, offsets, count).
    #[error("central directory disagrees with the local headers: {0}")]
    CentralDirectoryMismatch(String),
    /// Central directory entries share or overlap local data (the
    /// overlapped-entry zip bomb).
    #[error("overlapping entries: {0}")]
    OverlappingEntries(String),
    /// An entry is encrypted.
    #[error("encrypted entry {0:?}")]
    EncryptedEntry(String),
    /// An entry uses a compression method other than STORED (0) or DEFLATE (8).
    #[error("entry {name:?} uses unsupported compression method {method}")]
    UnsupportedCompression {
        /// The entry.
        name: String,
        /// The method number.
        method: u16,
    },
    /// A STORED entry declares its sizes only in a trailing data descriptor,
    /// so its end cannot be found without trusting the central directory.
    #[error("STORED entry {0:?} uses a data descriptor")]
    StoredWithDataDescriptor(String),
    /// An entry's declared size differs from the bytes it really holds.
    #[error("entry {name:?} declares {declared} {what} bytes but holds {actual}")]
    SizeMismatch {
        /// The entry.
        name: String,
        /// `compressed` or `uncompressed`.
        what: &'static str,
        /// The declared size.
        declared: u64,
        /// The real size.
        actual: u64,
    },
    /// An entry's CRC-32 differs from its declared one.
    #[error("entry {name:?} has CRC-32 {actual:08x}, declared {declared:08x}")]
    CrcMismatch {
        /// The entry.
        name: String,
        /// The declared CRC-32.
        declared: u32,
        /// The CRC-32 of the real data.
        actual: u32,
    },
    /// An archive has more entries than the policy allows.
    #[error("{} has more than {limit} entries", archive_label(archive))]
    TooManyEntries {
        /// The archive (`""` for the upload itself).
        archive: String,
        /// The limit.
        limit: u64,
    },
    /// Inflating all entries, nested archives included, would exceed the
    /// total uncompressed budget.
    #[error("uncompressed size exceeds the budget of {limit} bytes at entry {name:?}")]
    UncompressedBudgetExceeded {
        /// The entry being inflated when the budget ran out.
        name: String,
        /// The budget in bytes.
        limit: u64,
    },
    /// An entry inflates to more than the allowed ratio of its compressed size.
    #[error("entry {name:?} expands more than {ratio}:1")]
    CompressionRatioExceeded {
        /// The entry.
        name: String,
        /// The allowed ratio.
        ratio: u64,
    },
    /// A JAR nested deeper than the policy allows.
    #[error("nested archive {name:?} is deeper than {limit} levels")]
    NestingTooDeep {
        /// The nested archive entry.
        name: String,
        /// The maximum depth.
        limit: u8,
    },
    /// `META-INF/MANIFEST.MF` is missing, or names no main class.
    #[error("no main class: {0}")]
    MissingMainClass(String),
    /// The manifest names a main class that the JAR does not contain.
    #[error("main class {class:?} not found: no entry {entry:?}")]
    MainClassNotFound {
        /// The class name from the manifest.
        class: String,
        /// The entry it should be in.
        entry: String,
    },
    /// `META-INF/MANIFEST.MF` cannot be parsed.
    #[error("invalid manifest {entry:?}: {reason}")]
    InvalidManifest {
        /// The manifest entry.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A known-vulnerable library is bundled.
    #[error("vulnerable dependency in {entry:?}: {reason}")]
    VulnerableDependency {
        /// The offending entry (the JndiLookup class).
        entry: String,
        /// What makes it vulnerable.
        reason: String,
    },
    /// A class file needs a newer Java release than the target.
    #[error(
        "class {entry:?} has class-file version {major}, newer than Java {release} supports (max {max})"
    )]
    UnsupportedClassVersion {
        /// The class entry.
        entry: String,
        /// Its class-file major version.
        major: u16,
        /// The configured Java release.
        release: u16,
        /// The largest major version that release runs.
        max: u16,
    },
    /// The SHA-256 of the upload differs from the expected one.
    #[error("checksum mismatch: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        /// The expected digest.
        expected: crate::Sha256Digest,
        /// The digest of the bytes received.
        actual: crate::Sha256Digest,
    },
    /// Reading the upload failed.
    #[error("reading the upload failed: {0}")]
    Io(#[source] io::Error),
}

/// `the upload` or `nested archive "…"`, for messages.
pub(crate) fn archive_label(path: &str) -> String {
    if path.is_empty() {
        "the upload".to_owned()
    } else {
        format!("nested archive {path:?}")
    }
}

impl ValidationError {
    /// The stable, snake_case error code.
    ///
    /// ```
    /// use cameleer_build::ValidationError;
    /// let e = ValidationError::Empty("the upload has no bytes".into());
    /// assert_eq!(e.code(), "empty");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty(_) => "empty",
            Self::NotAZip(_) => "not_a_zip",
            Self::Truncated(_) => "truncated",
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::InvalidEntryName { .. } => "invalid_entry_name",
            Self::EntryNameTooLong { .. } => "entry_name_too_long",
            Self::SymlinkEntry(_) => "symlink_entry",
            Self::DuplicateEntry(_) => "duplicate_entry",
            Self::CentralDirectoryMismatch(_) => "central_directory_mismatch",
            Self::OverlappingEntries(_) => "overlapping_entries",
            Self::EncryptedEntry(_) => "encrypted_entry",
            Self::UnsupportedCompression { .. } => "unsupported_compression",
            Self::StoredWithDataDescriptor(_) => "stored_with_data_descriptor",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::CrcMismatch { .. } => "crc_mismatch",
            Self::TooManyEntries { .. } => "too_many_entries",
            Self::UncompressedBudgetExceeded { .. } => "uncompressed_budget_exceeded",
            Self::CompressionRatioExceeded { .. } => "compression_ratio_exceeded",
            Self::NestingTooDeep { .. } => "nesting_too_deep",
            Self::MissingMainClass(_) => "missing_main_class",
            Self::MainClassNotFound { .. } => "main_class_not_found",
            Self::InvalidManifest { .. } => "invalid_manifest",
            Self::VulnerableDependency { .. } => "vulnerable_dependency",
            Self::UnsupportedClassVersion { .. } => "unsupported_class_version",
            Self::ChecksumMismatch { .. } => "checksum_mismatch",
            Self::Io(_) => "io_error",
        }
    }

    /// Every code [`code`](Self::code) can return, for documentation and
    /// exhaustive tests.
    pub const CODES: &'static [&'static str] = &[
        "empty",
        "not_a_zip",
        "truncated",
        "too_large",
        "malformed",
        "invalid_entry_name",
        "entry_name_too_long",
        "symlink_entry",
        "duplicate_entry",
        "central_directory_mismatch",
        "overlapping_entries",
        "encrypted_entry",
        "unsupported_compression",
        "stored_with_data_descriptor",
        "size_mismatch",
        "crc_mismatch",
        "too_many_entries",
        "uncompressed_budget_exceeded",
        "compression_ratio_exceeded",
        "nesting_too_deep",
        "missing_main_class",
        "main_class_not_found",
        "invalid_manifest",
        "vulnerable_dependency",
        "unsupported_class_version",
        "checksum_mismatch",
        "io_error",
    ];

    /// Wraps this error for transport through `std::io::Read`.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// Recovers a validation error carried through `std::io::Read`, or wraps
    /// a real I/O error.
    pub(crate) fn from_io(e: io::Error) -> Self {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<ValidationError>())
        {
            match e
                .into_inner()
                .map(|inner| inner.downcast::<ValidationError>())
            {
                Some(Ok(v)) => return *v,
                Some(Err(other)) => return Self::Io(io::Error::other(other)),
                None => return Self::Io(io::Error::other("unknown I/O error")),
            }
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Self::Truncated(e.to_string());
        }
        Self::Io(e)
    }
}
