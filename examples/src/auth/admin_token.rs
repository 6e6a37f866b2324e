//! The admin token: read from a file, or made at the first start.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::token::random_hex;

/// The shortest admin token accepted from a file (a generated one is
/// `cmr_admin_` and 64 hex digits).
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// Why the admin token could not be had. Each variant has a stable
/// [`code`](AdminTokenError::code).
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// The file could not be read or written.
    #[error("admin token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The file holds too short a token.
    #[error(
        "admin token file {path}: the token is {len} characters, at least {MIN_ADMIN_TOKEN_LEN} are needed"
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// The token's length.
        len: usize,
    },
    /// The file holds a token with whitespace or control characters inside.
    #[error("admin token file {path}: the token has whitespace or control characters inside")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The random source failed.
    #[error("admin token: {0}")]
    Random(String),
}

impl AdminTokenError {
    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "admin_token_io",
            Self::TooShort { .. } => "admin_token_too_short",
            Self::Malformed { .. } => "admin_token_malformed",
            Self::Random(_) => "admin_token_random",
        }
    }
}

/// The admin token. Its `Debug` hides it; it is never logged.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

impl AdminToken {
    /// The token, from its first line of `path` (surrounding whitespace
    /// dropped).
    pub fn read(path: &Path) -> Result<Self, AdminTokenError> {
        let io = |source| AdminTokenError::Io {
            path: path.to_owned(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AdminTokenError::Malformed {
                path: path.to_owned(),
            });
        }
        if token.len() < MIN_ADMIN_TOKEN_LEN {
            return Err(AdminTokenError::TooShort {
                path: path.to_owned(),
                len: token.len(),
            });
        }
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "the admin token file is readable by others than its owner"
            );
        }
        Ok(Self(token.to_owned()))
    }

    /// The token of `path`, made there first if the file does not exist:
    /// a new random token written to a temporary file of mode 0600, synced
    /// and renamed into place, so a crash leaves no half-written token and
    /// two servers starting at once agree on one.
    pub fn read_or_create(path: &Path) -> Result<Self, AdminTokenError> {
        match Self::read(path) {
            Err(AdminTokenError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        let io = |source| AdminTokenError::Io {
            path: path.to_owned(),
            source,
        };
        let token = format!(
            "cmr_admin_{}",
            random_hex(32).map_err(|e| AdminTokenError::Random(e.to_string()))?
        );
        let tmp = path.with_extension(format!(
            "tmp-{}",
            random_hex(4).map_err(|e| AdminTokenError::Random(e.to_string()))?
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(format!("{token}\n").as_bytes())?;
            file.sync_all()?;
            // Not `rename`: a file another server made meanwhile wins.
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                tracing::info!(path = %path.display(), "admin token created (mode 0600)");
                Ok(Self(token))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read(path),
            Err(e) => Err(io(e)),
        }
    }

    /// The token itself, to compare against or hand to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}
