//! Why an OCI layer or image could not be assembled.

use std::io;

/// Why a layer, an image or an image layout could not be built.
///
/// Every variant has a stable, snake_case [`code`](OciError::code), like the
/// crate's other errors; messages name the offending path or field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// A path inside the layer is empty, the root, has `.` or `..` or empty
    /// components, control characters, a `.wh.` (whiteout) name, or is too
    /// long; or a symlink target is empty or has control characters.
    #[error("invalid layer path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given (lossily decoded, cut to 300 characters).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file name or symlink target on disk is not valid UTF-8.
    #[error("non-UTF-8 path on disk: {path:?}")]
    NonUtf8Path {
        /// The path, lossily decoded.
        path: String,
    },
    /// The same path was added twice (directories excepted).
    #[error("duplicate layer path {0:?}")]
    DuplicatePath(String),
    /// A path is both a directory and something else: a file under a file,
    /// or a file where a directory already is.
    #[error("layer path {path:?} conflicts: {reason}")]
    PathConflict {
        /// The path.
        path: String,
        /// What is in the way.
        reason: &'static str,
    },
    /// A directory walk met something that is neither a directory, a
    /// regular file nor a symlink (a socket, a FIFO, a device).
    #[error("unsupported file type at {path:?}: {kind}")]
    UnsupportedFileType {
        /// The path on disk.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// A file on disk vanished or changed size between being added to a
    /// layer and being written into it, or a blob no longer matches its
    /// digest.
    #[error("source {path:?} changed: {reason}")]
    SourceChanged {
        /// The path on disk.
        path: String,
        /// What changed.
        reason: String,
    },
    /// A reader yielded more or fewer bytes than its declared size.
    #[error("{path:?} declared {declared} bytes but its reader {reason}")]
    SizeMismatch {
        /// The layer path of the entry.
        path: String,
        /// The declared size.
        declared: u64,
        /// `ended early` or `yielded more`.
        reason: &'static str,
    },
    /// A file is too large for a ustar header (8 GiB or more).
    #[error("{path:?} is {size} bytes, more than a tar entry holds")]
    FileTooLarge {
        /// The layer path.
        path: String,
        /// Its size.
        size: u64,
    },
    /// [`LayerOptions`](crate::oci::LayerOptions) out of range.
    #[error("invalid layer options: {0}")]
    InvalidLayerOptions(&'static str),
    /// An [`ImageConfig`](crate::oci::ImageConfig) field that cannot be
    /// written into an image configuration.
    #[error("invalid image config field {field}: {reason}")]
    InvalidImageConfig {
        /// The field, with index or key: `entrypoint`, `env["PATH"]`.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The `oci-spec` types refused a value, or JSON serialisation failed.
    #[error("OCI spec error: {0}")]
    Spec(String),
    /// Reading a source or writing the output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl OciError {
    /// The stable, snake_case error code.
    ///
    /// ```
    /// use cameleer_build::oci::LayerBuilder;
    ///
    /// let err = LayerBuilder::new().add_dir("/opt/../etc").unwrap_err();
    /// assert_eq!(err.code(), "invalid_path");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidPath { .. } => "invalid_path",
            Self::NonUtf8Path { .. } => "non_utf8_path",
            Self::DuplicatePath(_) => "duplicate_path",
            Self::PathConflict { .. } => "path_conflict",
            Self::UnsupportedFileType { .. } => "unsupported_file_type",
            Self::SourceChanged { .. } => "source_changed",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::FileTooLarge { .. } => "file_too_large",
            Self::InvalidLayerOptions(_) => "invalid_layer_options",
            Self::InvalidImageConfig { .. } => "invalid_image_config",
            Self::Spec(_) => "oci_spec_error",
            Self::Io { .. } => "io_error",
        }
    }

    /// Every code [`code`](Self::code) can return.
    pub const CODES: &'static [&'static str] = &[
        "invalid_path",
        "non_utf8_path",
        "duplicate_path",
        "path_conflict",
        "unsupported_file_type",
        "source_changed",
        "size_mismatch",
        "file_too_large",
        "invalid_layer_options",
        "invalid_image_config",
        "oci_spec_error",
        "io_error",
    ];

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn spec(e: impl std::fmt::Display) -> Self {
        Self::Spec(e.to_string())
    }
}

/// `s` cut to `n` characters, for error messages.
pub(crate) fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
