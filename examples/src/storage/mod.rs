//! Durable storage for the example server: SQLite for deployments, content
//! addressed files for artifacts. Both survive a SIGKILL: every write is one
//! SQLite transaction or one rename.

mod fs_artifacts;
pub(crate) mod hashed_file;
mod sqlite;

pub use fs_artifacts::FsArtifactStore;
pub use sqlite::SqliteDeploymentStore;
