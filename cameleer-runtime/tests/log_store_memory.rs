//! The log store suite against the in-memory store.

use cameleer_runtime::logs::MemoryLogStore;

async fn fresh() -> MemoryLogStore {
    MemoryLogStore::new()
}

cameleer_runtime::log_store_conformance_tests!(fresh);
