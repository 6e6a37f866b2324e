//! One SQLite connection used from blocking tasks: what the SQLite stores
//! share.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use cameleer_runtime::{Error, Result};
use rusqlite::Connection;

/// Every connection's settings: a write-ahead log (readers never wait for
/// the writer; several connections may share the file), synced at commits
/// that matter, foreign keys enforced.
const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
";

/// A storage error from SQLite.
pub(crate) fn db_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::storage("sqlite", e)
}

/// A connection with its schema applied. One connection serialises
/// writers, which SQLite does anyway; clones share it.
#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and applies `schema`.
    pub(crate) fn open(path: &Path, schema: &str) -> Result<Self> {
        Self::from_connection(Connection::open(path).map_err(db_err)?, schema)
    }

    /// An in-memory database with `schema`, for tests.
    pub(crate) fn in_memory(schema: &str) -> Result<Self> {
        Self::from_connection(Connection::open_in_memory().map_err(db_err)?, schema)
    }

    fn from_connection(conn: Connection, schema: &str) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err)?;
        conn.execute_batch(PRAGMAS).map_err(db_err)?;
        conn.execute_batch(schema).map_err(db_err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The connection, for tests that write rows by hand.
    #[cfg(test)]
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection in a blocking task.
    pub(crate) async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard: MutexGuard<'_, Connection> =
                conn.lock().map_err(|_| Error::Storage {
                    message: "sqlite connection lock poisoned".into(),
                    source: None,
                })?;
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::storage("sqlite task failed", e))?
    }
}

/// `open(path)` and `in_memory()` for a store that is one [`Db`] with
/// `schema`, in a field named `db`.
macro_rules! store_constructors {
    ($store:ident, $schema:expr) => {
        impl $store {
            /// Opens (creating if needed) the database at `path`.
            pub fn open(path: &std::path::Path) -> cameleer_runtime::Result<Self> {
                Ok(Self {
                    db: super::sqlite_db::Db::open(path, $schema)?,
                })
            }

            /// An in-memory database, for tests.
            pub fn in_memory() -> cameleer_runtime::Result<Self> {
                Ok(Self {
                    db: super::sqlite_db::Db::in_memory($schema)?,
                })
            }
        }
    };
}
pub(crate) use store_constructors;
