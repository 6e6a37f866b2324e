//! What can go wrong with a [`LogStore`](super::LogStore).

use crate::BoxError;

/// A log store's error, with a stable [`code`](Self::code) for APIs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogStoreError {
    /// The query asks for something no store can answer (a zero limit, an
    /// empty text, a range that ends before it starts).
    #[error("invalid log query: {field}: {reason}")]
    InvalidQuery {
        /// The offending parameter.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The cursor is not one a store handed out.
    #[error("invalid log cursor {0:?}")]
    InvalidCursor(String),
    /// The store could not be reached or refused the operation; the
    /// operation had no effect, or, for an append, may be repeated (appends
    /// are idempotent).
    #[error("log store {store} unavailable: {message}")]
    Unavailable {
        /// Which store (`sqlite`, `clickhouse`, `memory`).
        store: &'static str,
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The store answered something this crate cannot read (a schema from
    /// another version, a corrupt row).
    #[error("log store {store} answered something unreadable: {message}")]
    Corrupt {
        /// Which store.
        store: &'static str,
        /// What could not be read.
        message: String,
    },
}

impl LogStoreError {
    /// The stable code: `invalid_query`, `invalid_cursor`,
    /// `log_store_unavailable`, `log_store_corrupt`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidQuery { .. } => "invalid_query",
            Self::InvalidCursor(_) => "invalid_cursor",
            Self::Unavailable { .. } => "log_store_unavailable",
            Self::Corrupt { .. } => "log_store_corrupt",
        }
    }

    /// Shorthand for [`InvalidQuery`](Self::InvalidQuery).
    pub fn invalid_query(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidQuery {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Unavailable`](Self::Unavailable) with a source.
    pub fn unavailable(
        store: &'static str,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Unavailable {
            store,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Whether the same call may succeed later (the store was unreachable),
    /// as opposed to a query that will always be refused.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
