//! Durable storage for the example server: SQLite for deployments,
//! quotas and API tokens, content addressed files for artifacts. All survive a SIGKILL:
//! every write is one SQLite transaction or one rename.

mod fs_artifacts;
pub(crate) mod hashed_file;
mod sqlite;
mod sqlite_db;
mod sqlite_quota;
mod sqlite_tokens;

pub use fs_artifacts::FsArtifactStore;
pub use sqlite::SqliteDeploymentStore;
pub use sqlite_quota::SqliteQuotaStore;
pub use sqlite_tokens::SqliteTokenStore;
