//! The Store conformance suite against the in-memory store.

use std::sync::Arc;

use cascade_engine::{MemoryStore, Store};

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    cascade_testkit::store_conformance(|| async { Arc::new(MemoryStore::new()) as Arc<dyn Store> }).await;
}
