//! [`LogStore`](cameleer_runtime::logs::LogStore) implementations for the
//! Cameleer runtime, where container logs outlive their containers:
//!
//! - [`SqliteLogStore`]: embedded, one file (WAL), FTS5 with the trigram
//!   tokenizer for substring search. The default of the example server (in
//!   its data dir).
//! - [`ClickHouseLogStore`]: ClickHouse over its HTTP interface, a
//!   `ReplacingMergeTree` partitioned by tenant and month, ordered for the
//!   per-app query, with retention by dropping old months. For scale.
//!
//! Both pass the same suite as the in-memory store
//! (`cameleer_runtime::log_store_conformance_tests!`).
#![deny(missing_docs)]

mod clickhouse;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use clickhouse::{ClickHouseLogStore, ClickHouseOptions, OLDEST_CLICKHOUSE};
pub use sqlite::SqliteLogStore;
