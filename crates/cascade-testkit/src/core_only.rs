//! [`CoreOnlyStore`]: a store with the required methods only, like a custom store that leaves
//! every optional part of the trait out.

use std::time::Duration;

use async_trait::async_trait;
use cascade_engine::store::{
    AttemptRef, CascadeRecord, CascadeUpdate, Conversation, Created, ListFilter, OutboxCounts, OutboxItem,
};
use cascade_engine::{CascadeId, ChannelName, Event, MemoryStore, Store, StoreError, Timestamp};

/// A [`Store`] that keeps cascades (in a [`MemoryStore`]) and implements nothing optional:
/// campaigns, policies and held requests answer with the trait's defaults (`Unavailable`), as
/// in a custom store written before those parts existed. For tests of how a server copes.
#[derive(Debug, Default)]
pub struct CoreOnlyStore(MemoryStore);

impl CoreOnlyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for CoreOnlyStore {
    async fn create(&self, record: CascadeRecord, events: Vec<Event>) -> Result<Created, StoreError> {
        self.0.create(record, events).await
    }
    async fn load(&self, id: CascadeId) -> Result<Option<CascadeRecord>, StoreError> {
        self.0.load(id).await
    }
    async fn save(&self, update: &CascadeUpdate) -> Result<u64, StoreError> {
        self.0.save(update).await
    }
    async fn events(&self, id: CascadeId) -> Result<Vec<Event>, StoreError> {
        self.0.events(id).await
    }
    async fn find_attempt(&self, adapter: &str, id: &str) -> Result<Option<AttemptRef>, StoreError> {
        self.0.find_attempt(adapter, id).await
    }
    async fn claim_due(&self, now: Timestamp, limit: usize, lease: Duration) -> Result<Vec<CascadeRecord>, StoreError> {
        self.0.claim_due(now, limit, lease).await
    }
    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError> {
        self.0.next_wake().await
    }
    async fn running_for_address(&self, channel: &ChannelName, address: &str) -> Result<Vec<CascadeId>, StoreError> {
        self.0.running_for_address(channel, address).await
    }
    async fn touch_conversation(&self, conversation: Conversation) -> Result<(), StoreError> {
        self.0.touch_conversation(conversation).await
    }
    async fn conversations(&self, addresses: &[(ChannelName, String)]) -> Result<Vec<Conversation>, StoreError> {
        self.0.conversations(addresses).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<CascadeRecord>, StoreError> {
        self.0.list(filter).await
    }
    async fn claim_outbox(&self, now: Timestamp, limit: usize, lease: Duration) -> Result<Vec<OutboxItem>, StoreError> {
        self.0.claim_outbox(now, limit, lease).await
    }
    async fn outbox_result(&self, id: u64, result: Result<(), (String, Option<Timestamp>)>) -> Result<(), StoreError> {
        self.0.outbox_result(id, result).await
    }
    async fn dead_letters(&self, before: Option<u64>, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.0.dead_letters(before, limit).await
    }
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.0.outbox_counts().await
    }
    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, StoreError> {
        self.0.purge_finished(before, limit).await
    }
}
