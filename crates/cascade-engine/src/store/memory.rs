use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use foldhash::{HashMap, HashSet};

use super::packed::{Malformed, StateBody, Unpacker, pack};
use super::*;
use crate::model::timestamp_nanos;

/// A [`Store`] in memory: fast, and gone when the process ends.
///
/// Used by tests, benchmarks, and embedders who want no persistence. Each cascade is kept
/// packed, a few hundred bytes instead of some thirty allocations of live values, and read
/// back on [`Store::load`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cascades: HashMap<CascadeId, Box<Entry>>,
    by_key: HashMap<String, CascadeId>,
    /// Attempts by a 128-bit hash of (adapter, provider's message id), two 64-bit hashes with
    /// seeds of their own, so the key owns no string. Keys sharing a hash are not expected in
    /// practice; if two did, the later would win, and the engine, which checks the attempt's
    /// recorded id before applying a status, would leave the earlier's statuses unmatched.
    by_provider: HashMap<u128, AttemptRef>,
    /// Wake-ups as (nanoseconds since the epoch, cascade): integers compare faster than
    /// timestamps and UUIDs, and every save moves a cascade here.
    due: BTreeSet<(i64, u128)>,
    /// Running cascades by a hash of (channel, address); callers check the real address.
    by_address: BTreeSet<(u64, u128)>,
    /// Seed the hashes of `by_address` and `by_provider`.
    seeds: [foldhash::fast::RandomState; 2],
    conversations: HashMap<(ChannelName, String), Vec<Conversation>>,
    outbox: BTreeMap<u64, OutboxItem>,
    next_outbox: u64,
    /// How many items of `outbox` are dead, kept up to date so counting reads no items.
    dead: u64,
    campaigns: BTreeMap<CampaignId, MemCampaign>,
    policies: BTreeMap<String, StoredPolicy>,
    /// Held requests by key, each with its lease's end.
    held: BTreeMap<String, (HeldRequest, Timestamp)>,
}

#[derive(Debug)]
struct MemCampaign {
    record: CampaignRecord,
    lease: Option<(String, Timestamp)>,
    recipients: BTreeMap<u64, RecipientRecord>,
}

/// One cascade: what the store's indexes and filters need as plain fields, the rest packed.
#[derive(Debug)]
struct Entry {
    version: u64,
    wake_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    /// Where the plan starts in `packed`.
    plan_at: u32,
    /// Where the rest of the state starts in `packed`.
    state_at: u32,
    /// The metadata, the plan (packed once: it never changes), then the rest of the state.
    packed: Box<[u8]>,
    /// The timeline's events, one after another.
    timeline: Box<[u8]>,
}

/// Room for a packed state or a save's events, enough for most (a two-step cascade waiting on
/// a status is about 400 bytes, its timeline about 250).
const STATE_ROOM: usize = 1_024;
const EVENTS_ROOM: usize = 512;

/// `events` of the cascade created at `created_at`, packed.
fn pack_events(events: &[Event], created_at: Timestamp) -> Vec<u8> {
    pack(EVENTS_ROOM, |w| {
        w.set_base(created_at);
        for e in events {
            w.put(e);
        }
    })
}

impl Entry {
    fn new(record: &CascadeRecord, events: &[Event]) -> Self {
        let (mut plan_at, mut state_at) = (0, 0);
        let packed = pack(STATE_ROOM, |w| {
            w.put(&*record.meta);
            plan_at = w.len();
            w.put(&record.state.plan);
            state_at = w.len();
            StateBody(&record.state).pack(w);
        });
        let offset = |at: usize| u32::try_from(at).expect("metadata and plan under 4 GiB");
        let (plan_at, state_at) = (offset(plan_at), offset(state_at));
        let mut entry = Entry {
            version: record.version,
            wake_at: record.wake_at,
            finished_at: record.state.finished_at,
            plan_at,
            state_at,
            packed: Box::from(&packed[..]),
            timeline: Box::default(),
        };
        entry.append(&pack_events(events, record.state.created_at));
        entry
    }

    /// Replaces the state with `state`, packed as `packed_state` (a [`StateBody`]).
    fn set_state(&mut self, state: &CascadeState, packed_state: &[u8]) {
        let meta = &self.packed[..self.state_at as usize];
        let mut packed = Vec::with_capacity(meta.len() + packed_state.len());
        packed.extend_from_slice(meta);
        packed.extend_from_slice(packed_state);
        self.packed = packed.into_boxed_slice();
        self.finished_at = state.finished_at;
    }

    /// Adds packed events to the timeline.
    fn append(&mut self, packed_events: &[u8]) {
        if packed_events.is_empty() {
            return;
        }
        let mut timeline = Vec::with_capacity(self.timeline.len() + packed_events.len());
        timeline.extend_from_slice(&self.timeline);
        timeline.extend_from_slice(packed_events);
        self.timeline = timeline.into_boxed_slice();
    }

    /// A copy without the timeline, to unpack once the lock is let go.
    fn snapshot(&self) -> Entry {
        Entry { packed: self.packed.clone(), timeline: Box::default(), ..*self }
    }

    /// A copy of the packed plan.
    fn plan_bytes(&self) -> Box<[u8]> {
        Box::from(&self.packed[self.plan_at as usize..self.state_at as usize])
    }

    fn meta(&self) -> Result<CascadeMeta, StoreError> {
        Unpacker::new(&self.packed[..self.plan_at as usize]).get().map_err(corrupt)
    }

    fn state(&self) -> Result<CascadeState, StoreError> {
        let (plan_at, state_at) = (self.plan_at as usize, self.state_at as usize);
        let plan = Unpacker::new(&self.packed[plan_at..state_at]).get().map_err(corrupt)?;
        StateBody::unpack(&mut Unpacker::new(&self.packed[state_at..]), plan).map_err(corrupt)
    }

    fn record(&self) -> Result<CascadeRecord, StoreError> {
        Ok(CascadeRecord {
            state: self.state()?,
            meta: Arc::new(self.meta()?),
            version: self.version,
            wake_at: self.wake_at,
        })
    }
}

/// The events packed by [`pack_events`] in `timeline`, of the cascade whose state is `body`.
fn unpack_events(timeline: &[u8], body: &[u8]) -> Result<Vec<Event>, StoreError> {
    let mut r = Unpacker::new(timeline);
    r.set_base(StateBody::created_at(body).map_err(corrupt)?);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(r.get().map_err(corrupt)?);
    }
    Ok(out)
}

fn corrupt(e: Malformed) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The `due` key of a wake-up.
fn due_key(at: Timestamp, id: CascadeId) -> (i64, u128) {
    (timestamp_nanos(at), id.as_uuid().as_u128())
}

fn lease_end(now: Timestamp, lease: Duration) -> Timestamp {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

impl MemoryStore {
    /// The most records an engine keeps decoded in front of this store: enough for the
    /// cascades in motion at any moment (reading one back costs about a microsecond), not
    /// the 1.9 KB apiece that [`EngineConfig::cache_size`](crate::EngineConfig::cache_size)
    /// would allow each of thousands of waiting ones.
    pub const CACHE_LIMIT: usize = 2_048;

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data that is still consistent enough to
        // read; keep serving rather than poisoning every later call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many cascades it holds.
    pub fn len(&self) -> usize {
        self.lock().cascades.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn address_key(&self, channel: &ChannelName, address: &str) -> u64 {
        self.seeds[0].hash_one((channel.as_str(), address))
    }

    fn provider_key(&self, adapter: &str, provider_message_id: &str) -> u128 {
        let [a, b] = self.seeds.each_ref().map(|s| s.hash_one((adapter, provider_message_id)));
        (u128::from(a) << 64) | u128::from(b)
    }

    /// Refuses a policy write whose expected version is not the stored one (0: none).
    fn check_policy_version(&self, name: &str, expected: Option<u64>) -> Result<(), StoreError> {
        let current = self.policies.get(name).map_or(0, |p| p.version);
        match expected {
            Some(v) if v != current => Err(StoreError::PolicyConflict { name: name.to_owned(), current }),
            _ => Ok(()),
        }
    }

    fn index_addresses(&mut self, state: &CascadeState, add: bool) {
        let id = state.id;
        for (channel, address) in state.plan.reply_addresses() {
            let key = (self.address_key(channel, address), id.as_uuid().as_u128());
            if add {
                self.by_address.insert(key);
            } else {
                self.by_address.remove(&key);
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, record: CascadeRecord, events: Vec<Event>) -> Result<Created, StoreError> {
        let entry = Box::new(Entry::new(&record, &events));
        let mut g = self.lock();
        let g = &mut *g;
        if let Some(key) = &record.meta.idempotency_key
            && let Some(id) = g.by_key.get(key).copied()
        {
            let same_request = match g.cascades.get(&id) {
                Some(e) => e.meta()?.fingerprint == record.meta.fingerprint,
                None => false,
            };
            return Ok(Created::Existing { id, same_request });
        }
        let id = record.id();
        if let Some(key) = &record.meta.idempotency_key {
            g.by_key.insert(key.clone(), id);
        }
        if let Some(w) = record.wake_at {
            g.due.insert(due_key(w, id));
        }
        if !record.state.is_finished() {
            g.index_addresses(&record.state, true);
        }
        g.cascades.insert(id, entry);
        Ok(Created::New)
    }

    async fn load(&self, id: CascadeId) -> Result<Option<CascadeRecord>, StoreError> {
        let copy = self.lock().cascades.get(&id).map(|e| e.snapshot());
        copy.map(|e| e.record()).transpose()
    }

    async fn save(&self, u: &CascadeUpdate) -> Result<u64, StoreError> {
        let packed_state = pack(STATE_ROOM, |w| StateBody(&u.state).pack(w));
        let packed_events = pack_events(&u.events, u.state.created_at);
        let mut g = self.lock();
        let id = u.state.id;
        let g = &mut *g;
        let entry = g.cascades.get_mut(&id).ok_or(StoreError::NotFound(id))?;
        if entry.version != u.expected_version {
            return Err(StoreError::Conflict(id));
        }
        if let Some(w) = entry.wake_at {
            g.due.remove(&due_key(w, id));
        }
        if let Some(w) = u.wake_at {
            g.due.insert(due_key(w, id));
        }
        // `finished_at` is set with the outcome.
        let finished_now = u.state.is_finished() && entry.finished_at.is_none();
        let entry_finished_at = u.state.finished_at.unwrap_or(u.state.created_at);
        entry.version += 1;
        entry.wake_at = u.wake_at;
        entry.set_state(&u.state, &packed_state);
        entry.append(&packed_events);
        let version = entry.version;
        if finished_now {
            g.index_addresses(&u.state, false);
        }
        for r in &u.provider_refs {
            let key = g.provider_key(r.adapter.as_str(), &r.provider_message_id);
            g.by_provider.insert(key, AttemptRef { cascade: id, attempt: r.attempt });
        }
        if let Some(r) = &u.recipient
            && let Some(rec) = g.campaigns.get_mut(&r.campaign).and_then(|c| c.recipients.get_mut(&r.seq))
        {
            rec.result = Some(r.result.clone());
        }
        if let Some(o) = u.outbox.clone() {
            g.next_outbox += 1;
            let item = OutboxItem {
                id: g.next_outbox,
                cascade: o.cascade,
                url: o.url,
                body: o.body,
                tries: 0,
                next_at: entry_finished_at,
                last_error: None,
                dead: false,
            };
            g.outbox.insert(item.id, item);
        }
        Ok(version)
    }

    async fn events(&self, id: CascadeId) -> Result<Vec<Event>, StoreError> {
        let g = self.lock();
        let e = g.cascades.get(&id).ok_or(StoreError::NotFound(id))?;
        let (timeline, body) = (e.timeline.clone(), Box::<[u8]>::from(&e.packed[e.state_at as usize..]));
        drop(g);
        unpack_events(&timeline, &body)
    }

    async fn find_attempt(&self, adapter: &str, provider_message_id: &str) -> Result<Option<AttemptRef>, StoreError> {
        let g = self.lock();
        Ok(g.by_provider.get(&g.provider_key(adapter, provider_message_id)).copied())
    }

    async fn claim_due(&self, now: Timestamp, limit: usize, lease: Duration) -> Result<Vec<CascadeRecord>, StoreError> {
        let mut guard = self.lock();
        let g = &mut *guard;
        let now_nanos = timestamp_nanos(now);
        let due: Vec<(i64, u128)> = g.due.iter().take_while(|(w, _)| *w <= now_nanos).take(limit).copied().collect();
        let until = lease_end(now, lease);
        let mut claimed = Vec::with_capacity(due.len());
        for key in due {
            g.due.remove(&key);
            let id = CascadeId::from_uuid(uuid::Uuid::from_u128(key.1));
            let Some(e) = g.cascades.get_mut(&id) else { continue };
            e.wake_at = Some(until);
            e.version += 1;
            g.due.insert(due_key(until, id));
            claimed.push(e.snapshot());
        }
        drop(guard);
        claimed.iter().map(Entry::record).collect()
    }

    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.lock().due.first().map(|(w, _)| chrono::DateTime::from_timestamp_nanos(*w)))
    }

    async fn running_for_address(&self, channel: &ChannelName, address: &str) -> Result<Vec<CascadeId>, StoreError> {
        // The candidates' plans, copied out to unpack after letting the lock go.
        let plans: Vec<(CascadeId, Box<[u8]>)> = {
            let g = self.lock();
            let key = g.address_key(channel, address);
            g.by_address
                .range((key, 0)..=(key, u128::MAX))
                .map(|(_, id)| CascadeId::from_uuid(uuid::Uuid::from_u128(*id)))
                .filter_map(|id| g.cascades.get(&id).map(|e| (id, e.plan_bytes())))
                .collect()
        };
        // Keep only true matches: the index is keyed by a hash.
        let mut out = Vec::new();
        for (id, bytes) in plans {
            let plan: crate::plan::Plan = Unpacker::new(&bytes).get().map_err(corrupt)?;
            if plan.reply_addresses().into_iter().any(|(c, a)| c == channel && a == address) {
                out.push(id);
            }
        }
        Ok(out)
    }

    async fn touch_conversation(&self, c: Conversation) -> Result<(), StoreError> {
        let mut g = self.lock();
        let list = g.conversations.entry((c.channel.clone(), c.address.clone())).or_default();
        let slot = match list.iter().position(|x| x.connection == c.connection) {
            Some(i) => &mut list[i],
            None => {
                list.push(Conversation { last_inbound_at: None, last_delivery_at: None, ..c.clone() });
                list.last_mut().expect("just pushed")
            }
        };
        slot.last_inbound_at = slot.last_inbound_at.max(c.last_inbound_at);
        slot.last_delivery_at = slot.last_delivery_at.max(c.last_delivery_at);
        Ok(())
    }

    async fn conversations(&self, addresses: &[(ChannelName, String)]) -> Result<Vec<Conversation>, StoreError> {
        let g = self.lock();
        let mut out: Vec<Conversation> = addresses
            .iter()
            .filter_map(|(ch, a)| g.conversations.get(&(ch.clone(), a.clone())))
            .flatten()
            .cloned()
            .collect();
        out.dedup();
        out.sort_by(|a, b| (&a.channel, &a.connection).cmp(&(&b.channel, &b.connection)));
        Ok(out)
    }

    async fn list(&self, f: &ListFilter) -> Result<Vec<CascadeRecord>, StoreError> {
        // Newest first: unpack in id order until `limit` match, a chunk at a time copied out
        // under the lock and unpacked after, so a filter that matches little does not hold up
        // the engine while it reads through every cascade.
        if f.limit == 0 {
            return Ok(Vec::new());
        }
        let mut ids: Vec<CascadeId> =
            self.lock().cascades.keys().copied().filter(|id| f.before.is_none_or(|b| *id < b)).collect();
        ids.sort_unstable_by_key(|id| std::cmp::Reverse(*id));
        let mut out = Vec::new();
        for chunk in ids.chunks(256) {
            let copies: Vec<Entry> = {
                let g = self.lock();
                chunk.iter().filter_map(|id| g.cascades.get(id).map(|e| e.snapshot())).collect()
            };
            for e in copies {
                let r = e.record()?;
                let keep = f.state.as_deref().is_none_or(|s| state_name(&r.state) == s)
                    && f.channel.as_ref().is_none_or(|c| r.state.plan.steps.iter().any(|s| &s.channel == c))
                    && f.since.is_none_or(|t| r.state.created_at >= t)
                    && f.owner.as_deref().is_none_or(|o| r.meta.owner.as_deref() == Some(o));
                if keep {
                    out.push(r);
                    if out.len() == f.limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn claim_outbox(&self, now: Timestamp, limit: usize, lease: Duration) -> Result<Vec<OutboxItem>, StoreError> {
        let mut g = self.lock();
        let until = lease_end(now, lease);
        let mut out = Vec::new();
        for item in g.outbox.values_mut().filter(|i| !i.dead && i.next_at <= now).take(limit) {
            item.next_at = until;
            out.push(item.clone());
        }
        Ok(out)
    }

    async fn outbox_result(&self, id: u64, result: Result<(), (String, Option<Timestamp>)>) -> Result<(), StoreError> {
        let mut g = self.lock();
        match result {
            Ok(()) => {
                if g.outbox.remove(&id).is_some_and(|item| item.dead) {
                    g.dead -= 1;
                }
            }
            Err((error, retry_at)) => {
                if let Some(item) = g.outbox.get_mut(&id) {
                    item.tries += 1;
                    item.last_error = Some(error);
                    match retry_at {
                        Some(at) => item.next_at = at,
                        None if !item.dead => {
                            item.dead = true;
                            g.dead += 1;
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }

    async fn dead_letters(&self, before: Option<u64>, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let g = self.lock();
        let upper = before.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let below = g.outbox.range((std::ops::Bound::Unbounded, upper));
        Ok(below.rev().map(|(_, i)| i).filter(|i| i.dead).take(limit).cloned().collect())
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let g = self.lock();
        Ok(OutboxCounts { pending: g.outbox.len() as u64 - g.dead, dead: g.dead })
    }

    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, StoreError> {
        let mut g = self.lock();
        let g = &mut *g;
        // A cascade stays while a callback of it is still to be delivered.
        let waiting: HashSet<CascadeId> = g.outbox.values().filter(|i| !i.dead).map(|i| i.cascade).collect();
        let old: HashSet<CascadeId> = g
            .cascades
            .iter()
            .filter(|(_, e)| e.finished_at.is_some_and(|t| t < before))
            .map(|(id, _)| *id)
            .filter(|id| !waiting.contains(id))
            .take(limit)
            .collect();
        for id in &old {
            g.cascades.remove(id);
        }
        // Their keys, provider ids and dead callbacks go with them (a callback still to deliver
        // kept its cascade above).
        if !old.is_empty() {
            g.by_key.retain(|_, id| !old.contains(id));
            g.by_provider.retain(|_, r| !old.contains(&r.cascade));
            let before_len = g.outbox.len();
            g.outbox.retain(|_, i| !old.contains(&i.cascade));
            g.dead -= (before_len - g.outbox.len()) as u64;
        }
        Ok(old.len())
    }

    async fn save_campaign(&self, campaign: &CampaignRecord) -> Result<(), StoreError> {
        let mut g = self.lock();
        match g.campaigns.get_mut(&campaign.id) {
            Some(c) => {
                let r = &mut c.record;
                r.name.clone_from(&campaign.name);
                r.spec.clone_from(&campaign.spec);
                r.recipients = campaign.recipients;
                r.updated_at = campaign.updated_at;
            }
            None => {
                let entry = MemCampaign { record: campaign.clone(), lease: None, recipients: BTreeMap::new() };
                g.campaigns.insert(campaign.id, entry);
            }
        }
        Ok(())
    }

    async fn load_campaign(&self, id: CampaignId) -> Result<Option<CampaignRecord>, StoreError> {
        Ok(self.lock().campaigns.get(&id).map(|c| c.record.clone()))
    }

    async fn list_campaigns(
        &self,
        before: Option<CampaignId>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        let g = self.lock();
        Ok(g.campaigns
            .values()
            .rev()
            .map(|c| &c.record)
            .filter(|r| before.is_none_or(|b| r.id < b))
            .filter(|r| owner.is_none_or(|o| r.owner.as_deref() == Some(o)))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn set_campaign_state(
        &self,
        id: CampaignId,
        from: &[CampaignState],
        to: CampaignState,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let Some(c) = g.campaigns.get_mut(&id) else { return Ok(false) };
        if !from.contains(&c.record.state) {
            return Ok(false);
        }
        c.record.state = to;
        c.record.updated_at = now;
        Ok(true)
    }

    async fn lease_campaigns(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        let mut g = self.lock();
        let mut out = Vec::new();
        for c in g.campaigns.values_mut().filter(|c| c.record.state == CampaignState::Running) {
            if out.len() == limit {
                break;
            }
            let free = c.lease.as_ref().is_none_or(|(h, end)| h == holder || *end < now);
            if free {
                c.lease = Some((holder.to_owned(), until));
                out.push(c.record.clone());
            }
        }
        Ok(out)
    }

    async fn add_recipients(&self, campaign: CampaignId, recipients: &[NewRecipient]) -> Result<(), StoreError> {
        let mut g = self.lock();
        let c =
            g.campaigns.get_mut(&campaign).ok_or_else(|| StoreError::Unavailable(format!("no campaign {campaign}")))?;
        for r in recipients {
            c.recipients.entry(r.seq).or_insert_with(|| RecipientRecord {
                seq: r.seq,
                line: r.line,
                contact: r.contact.clone(),
                zone: r.zone.clone(),
                state: RecipientState::Pending,
                cascade: None,
                changed_at: None,
                result: None,
            });
        }
        Ok(())
    }

    async fn campaign_recipients(
        &self,
        campaign: CampaignId,
        f: &RecipientFilter,
    ) -> Result<Vec<RecipientRecord>, StoreError> {
        let g = self.lock();
        let Some(c) = g.campaigns.get(&campaign) else { return Ok(Vec::new()) };
        let lower = f.after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        Ok(c.recipients
            .range((lower, std::ops::Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| {
                let by_state = f.states.contains(&r.state);
                let by_outcome = r.result.as_ref().is_some_and(|x| f.outcomes.contains(&x.outcome));
                (f.states.is_empty() && f.outcomes.is_empty()) || by_state || by_outcome
            })
            .filter(|r| f.zones.as_ref().is_none_or(|z| r.state != RecipientState::Pending || z.contains(&r.zone)))
            .take(f.limit)
            .cloned()
            .collect())
    }

    async fn mark_started(
        &self,
        campaign: CampaignId,
        started: &[(u64, StartResult)],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut g = self.lock();
        let Some(c) = g.campaigns.get_mut(&campaign) else { return Ok(()) };
        for (seq, start) in started {
            let Some(r) = c.recipients.get_mut(seq).filter(|r| r.state == RecipientState::Pending) else { continue };
            r.changed_at = Some(at);
            match start {
                StartResult::Started(id) => {
                    r.state = RecipientState::Started;
                    r.cascade = Some(*id);
                }
                StartResult::Refused(reason) => {
                    r.state = RecipientState::Refused;
                    r.result = Some(RecipientResult {
                        outcome: "refused".into(),
                        channel: None,
                        cost: crate::model::Cost::ZERO,
                        reason: Some(reason.clone()),
                        at: Some(at),
                    });
                }
            }
        }
        Ok(())
    }

    async fn close_pending(&self, campaign: CampaignId, to: RecipientState, at: Timestamp) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let Some(c) = g.campaigns.get_mut(&campaign) else { return Ok(0) };
        let mut n = 0;
        for r in c.recipients.values_mut().filter(|r| r.state == RecipientState::Pending) {
            r.state = to;
            r.changed_at = Some(at);
            n += 1;
        }
        Ok(n)
    }

    async fn campaign_tally(&self, campaign: CampaignId) -> Result<Vec<Tally>, StoreError> {
        let g = self.lock();
        let Some(c) = g.campaigns.get(&campaign) else { return Ok(Vec::new()) };
        let mut groups: BTreeMap<(&str, Option<&str>, Option<&str>), Tally> = BTreeMap::new();
        for r in c.recipients.values() {
            let outcome = r.result.as_ref().map(|x| x.outcome.as_str());
            let channel = r.result.as_ref().and_then(|x| x.channel.as_ref().map(ChannelName::as_str));
            let t = groups.entry((r.state.as_str(), outcome, channel)).or_insert_with(|| Tally {
                state: r.state,
                outcome: outcome.map(str::to_owned),
                channel: r.result.as_ref().and_then(|x| x.channel.clone()),
                count: 0,
                cost: crate::model::Cost::ZERO,
            });
            t.count += 1;
            t.cost = t.cost + r.result.as_ref().map_or(crate::model::Cost::ZERO, |x| x.cost);
        }
        Ok(groups.into_values().collect())
    }

    async fn campaign_series(&self, campaign: CampaignId, bucket: Duration) -> Result<Vec<SeriesPoint>, StoreError> {
        let size = i64::try_from(bucket.as_nanos()).unwrap_or(i64::MAX).max(1);
        let g = self.lock();
        let Some(c) = g.campaigns.get(&campaign) else { return Ok(Vec::new()) };
        let mut groups: BTreeMap<(i64, &str, Option<&ChannelName>), u64> = BTreeMap::new();
        for result in c.recipients.values().filter_map(|r| r.result.as_ref()) {
            let Some(at) = result.at.and_then(|t| t.timestamp_nanos_opt()) else { continue };
            *groups.entry((at - at.rem_euclid(size), result.outcome.as_str(), result.channel.as_ref())).or_default() +=
                1;
        }
        Ok(groups
            .into_iter()
            .map(|((at, outcome, channel), count)| SeriesPoint {
                at: chrono::DateTime::from_timestamp_nanos(at),
                outcome: outcome.to_owned(),
                channel: channel.cloned(),
                count,
            })
            .collect())
    }

    async fn campaign_reasons(&self, campaign: CampaignId, limit: usize) -> Result<Vec<(String, u64)>, StoreError> {
        let g = self.lock();
        let Some(c) = g.campaigns.get(&campaign) else { return Ok(Vec::new()) };
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for result in c.recipients.values().filter_map(|r| r.result.as_ref()) {
            if matches!(result.outcome.as_str(), "failed" | "refused") {
                *counts.entry(result.reason.as_deref().unwrap_or_default()).or_default() += 1;
            }
        }
        let mut out: Vec<(String, u64)> = counts.into_iter().map(|(r, n)| (r.to_owned(), n)).collect();
        // Stable: equal counts stay in reason order.
        out.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        out.truncate(limit);
        Ok(out)
    }

    async fn save_policy(
        &self,
        name: &str,
        policy: &Policy,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<StoredPolicy, StoreError> {
        let policy = policy.clone();
        let mut g = self.lock();
        g.check_policy_version(name, expected)?;
        let version = g.policies.get(name).map_or(0, |p| p.version) + 1;
        let stored = StoredPolicy { name: name.to_owned(), policy, version, updated_at: at };
        g.policies.insert(name.to_owned(), stored.clone());
        Ok(stored)
    }

    async fn load_policy(&self, name: &str) -> Result<Option<StoredPolicy>, StoreError> {
        Ok(self.lock().policies.get(name).cloned())
    }

    async fn list_policies(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        Ok(self.lock().policies.values().cloned().collect())
    }

    async fn delete_policy(&self, name: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        let mut g = self.lock();
        g.check_policy_version(name, expected)?;
        Ok(g.policies.remove(name).is_some())
    }

    async fn hold_request(&self, r: &NewHeldRequest, now: Timestamp, lease: Duration) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if g.held.contains_key(&r.key) {
            return Ok(false);
        }
        let held = HeldRequest { key: r.key.clone(), kind: r.kind.clone(), body: r.body.clone(), held_at: now };
        g.held.insert(r.key.clone(), (held, lease_end(now, lease)));
        Ok(true)
    }

    async fn claim_held_requests(
        &self,
        kind: &str,
        now: Timestamp,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<HeldRequest>, StoreError> {
        let mut g = self.lock();
        let mut due: Vec<&mut (HeldRequest, Timestamp)> =
            g.held.values_mut().filter(|(r, until)| r.kind == kind && *until <= now).collect();
        due.sort_by(|a, b| (a.0.held_at, &a.0.key).cmp(&(b.0.held_at, &b.0.key)));
        let until = lease_end(now, lease);
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(r, lease_until)| {
                *lease_until = until;
                r.clone()
            })
            .collect())
    }

    async fn release_request(&self, key: &str) -> Result<(), StoreError> {
        self.lock().held.remove(key);
        Ok(())
    }

    /// [`MemoryStore::CACHE_LIMIT`].
    fn cache_limit(&self) -> Option<usize> {
        Some(Self::CACHE_LIMIT)
    }
}
