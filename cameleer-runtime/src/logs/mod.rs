//! Logs that outlive containers: the [`LogStore`] contract, an in-memory
//! store, and the [`LogForwarder`] that copies every deployment's output
//! into a store.
//!
//! A backend's logs vanish with its containers (a redeploy, a rollback, a
//! cleanup). A host that wants them kept, and searchable, starts a
//! [`LogForwarder`] beside its [`Platform`](crate::Platform) and serves
//! queries ([`LogQuery`]) from the store. The `cameleer-logstore` crate has
//! the SQLite (embedded) and ClickHouse implementations.

mod error;
pub mod forwarder;
pub(crate) mod model;
mod store;

pub use error::LogStoreError;
pub use forwarder::{ForwarderOptions, ForwarderSources, ForwarderStats, LogForwarder};
pub use model::{
    LogCursor, LogOrder, LogPage, LogQuery, MAX_PAGE_LINES, ResumePoint, StoredLine, from_nanos,
    nanos,
};
pub use store::{LogStore, MemoryLogStore, page_of};
