//! Connection pools: round-robin over healthy connections, sticky senders, per-connection rate
//! limits, and taking a failing connection out for a cool-down.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::channel::{Capabilities, Channel};
use crate::machine::{PickRequest, Picker};
use crate::model::{ChannelName, ConnectionId, Cost, Timestamp};
use crate::plan::ChannelDirectory;

/// A send rate: at most `count` sends per `per`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RateLimit {
    /// How many sends…
    pub count: u32,
    /// …per this long.
    #[serde(with = "crate::model::duration")]
    pub per: Duration,
}

impl RateLimit {
    /// `count` sends per second.
    pub fn per_second(count: u32) -> Self {
        Self { count, per: Duration::from_secs(1) }
    }

    fn quota(&self) -> Option<Quota> {
        let count = NonZeroU32::new(self.count)?;
        let period = self.per.checked_div(count.get()).filter(|p| !p.is_zero())?;
        Some(Quota::with_period(period)?.allow_burst(count))
    }
}

/// One configured sender account: an adapter value plus its price and rate limit.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Its id, unique across the engine.
    pub id: ConnectionId,
    /// The adapter for it.
    pub channel: Arc<dyn Channel>,
    /// The price of one message (used when the provider does not report a cost).
    pub price: Cost,
    /// Its own send rate limit, if any.
    pub rate_limit: Option<RateLimit>,
}

impl Connection {
    /// A connection with no price and no rate limit.
    pub fn new(id: impl Into<ConnectionId>, channel: impl Channel) -> Self {
        Self::from_arc(id, Arc::new(channel))
    }

    /// The same, from a shared adapter value.
    pub fn from_arc(id: impl Into<ConnectionId>, channel: Arc<dyn Channel>) -> Self {
        Self { id: id.into(), channel, price: Cost::ZERO, rate_limit: None }
    }

    /// Sets the price per message.
    pub fn price(mut self, price: Cost) -> Self {
        self.price = price;
        self
    }

    /// Sets the rate limit.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }
}

/// When a connection is taken out and let back in.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthPolicy {
    /// `connection`-class failures in a row that take a connection out. Default 3.
    pub failures_to_eject: u32,
    /// How long it stays out before it is tried again. Default 30 s.
    #[serde(with = "crate::model::duration")]
    pub cool_down: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self { failures_to_eject: 3, cool_down: Duration::from_secs(30) }
    }
}

/// A connection's health as the pool sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Health {
    /// `connection`-class failures in a row.
    pub consecutive_failures: u32,
    /// Out of the pool until then.
    pub out_until: Option<Timestamp>,
    /// Sends made through it.
    pub sends: u64,
}

impl Health {
    /// Whether it may be used at `now`.
    pub fn usable(&self, now: Timestamp) -> bool {
        self.out_until.is_none_or(|t| now >= t)
    }
}

/// A pool member.
#[derive(Debug)]
pub struct Member {
    /// The connection.
    pub connection: Connection,
    limiter: Option<DefaultDirectRateLimiter>,
    health: Mutex<Health>,
    /// Sends other than bulk ones waiting for the rate limit.
    urgent: AtomicUsize,
    /// Signalled when `urgent` drops to zero.
    idle: tokio::sync::Notify,
}

/// Counts one waiting urgent send for as long as it lives.
struct Waiting<'a>(&'a Member);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.urgent.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Member {
    /// Waits until the connection's rate limit allows one more send.
    ///
    /// Bulk sends (a campaign's, `bulk = true`) give way: they take a slot only while no other
    /// send is waiting for one on this connection, so single cascades (a one-time code, an
    /// order confirmation) never queue behind campaign traffic.
    pub async fn until_ready(&self, bulk: bool) {
        let Some(l) = &self.limiter else { return };
        if !bulk {
            self.urgent.fetch_add(1, Ordering::AcqRel);
            let _waiting = Waiting(self);
            l.until_ready().await;
            return;
        }
        loop {
            let idle = self.idle.notified();
            if self.urgent.load(Ordering::Acquire) > 0 {
                idle.await;
                continue;
            }
            match l.check() {
                Ok(()) => return,
                Err(not_until) => {
                    tokio::time::sleep(not_until.wait_time_from(governor::clock::Clock::now(l.clock()))).await;
                }
            }
        }
    }

    /// A snapshot of its health.
    pub fn health(&self) -> Health {
        *self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The connections of one channel.
#[derive(Debug)]
pub struct Pool {
    channel: ChannelName,
    capabilities: Capabilities,
    members: Vec<Member>,
    last: Mutex<Option<usize>>,
}

impl Pool {
    /// The members, in configuration order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Chooses a connection: the preferred one if usable; otherwise the next usable one after
    /// the last pick (round-robin), passing over `avoid` if another is usable.
    pub fn pick(&self, req: &PickRequest<'_>, now: Timestamp) -> Option<&Member> {
        let usable = |m: &Member| {
            req.subset.is_none_or(|s| s.contains(&m.connection.id))
                && !req.excluded.contains(&m.connection.id)
                && m.health().usable(now)
        };
        if let Some(p) = req.preferred
            && let Some(m) = self.members.iter().find(|m| &m.connection.id == p && usable(m))
        {
            return Some(m);
        }
        let n = self.members.len();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let start = last.map_or(0, |l| l + 1);
        let candidates = (0..n).map(|k| (start + k) % n).filter(|&i| usable(&self.members[i]));
        let mut fallback = None;
        let mut chosen = None;
        for i in candidates {
            if req.avoid == Some(&self.members[i].connection.id) {
                fallback.get_or_insert(i);
                continue;
            }
            chosen = Some(i);
            break;
        }
        let i = chosen.or(fallback)?;
        *last = Some(i);
        Some(&self.members[i])
    }
}

/// Every pool, by channel; the engine's directory of connections.
#[derive(Debug, Default)]
pub struct Pools {
    pools: HashMap<ChannelName, Pool>,
    /// The channels in the order their first connections were given.
    order: Vec<ChannelName>,
    index: HashMap<ConnectionId, (ChannelName, usize)>,
    health: HealthPolicy,
}

/// A configuration mistake found while building pools.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Two connections share an id.
    #[error("connection id `{0}` is used twice")]
    DuplicateConnection(ConnectionId),
    /// Connections of one channel disagree on capabilities.
    #[error("connections of channel `{0}` declare different capabilities; one pool must be alike")]
    MixedCapabilities(ChannelName),
    /// A rate limit allows nothing.
    #[error("connection `{0}`: rate limit must allow at least one send per period")]
    BadRateLimit(ConnectionId),
}

impl Pools {
    /// Groups connections into pools by channel.
    pub fn new(connections: Vec<Connection>, health: HealthPolicy) -> Result<Self, PoolError> {
        let mut pools: HashMap<ChannelName, Pool> = HashMap::new();
        let mut order = Vec::new();
        let mut index = HashMap::new();
        for c in connections {
            let info = c.channel.info().clone();
            let limiter = match &c.rate_limit {
                Some(r) => Some(RateLimiter::direct(r.quota().ok_or_else(|| PoolError::BadRateLimit(c.id.clone()))?)),
                None => None,
            };
            let pool = pools.entry(info.channel.clone()).or_insert_with(|| {
                order.push(info.channel.clone());
                Pool {
                    channel: info.channel.clone(),
                    capabilities: info.capabilities.clone(),
                    members: Vec::new(),
                    last: Mutex::new(None),
                }
            });
            if pool.capabilities != info.capabilities {
                return Err(PoolError::MixedCapabilities(info.channel));
            }
            if index.insert(c.id.clone(), (info.channel.clone(), pool.members.len())).is_some() {
                return Err(PoolError::DuplicateConnection(c.id));
            }
            pool.members.push(Member {
                connection: c,
                limiter,
                health: Mutex::new(Health::default()),
                urgent: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
            });
        }
        Ok(Self { pools, order, index, health })
    }

    /// The pool of a channel.
    pub fn pool(&self, channel: &ChannelName) -> Option<&Pool> {
        self.pools.get(channel)
    }

    /// Every pool, in configuration order: channels in the order their first connections
    /// were given (each pool's [members](Pool::members) keep theirs too).
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.order.iter().filter_map(|c| self.pools.get(c))
    }

    /// A connection by id.
    pub fn member(&self, id: &ConnectionId) -> Option<&Member> {
        let (ch, i) = self.index.get(id)?;
        self.pools.get(ch)?.members.get(*i)
    }

    /// Records the result of a send for health: `connection`-class failures count towards
    /// taking the connection out; anything else resets the count.
    pub fn report(&self, id: &ConnectionId, connection_failure: bool, now: Timestamp) {
        let Some(m) = self.member(id) else { return };
        let mut h = m.health.lock().unwrap_or_else(|e| e.into_inner());
        h.sends += 1;
        if connection_failure {
            h.consecutive_failures += 1;
            if h.consecutive_failures >= self.health.failures_to_eject {
                let cool = chrono::Duration::from_std(self.health.cool_down).unwrap_or(chrono::Duration::MAX);
                h.out_until = Some(now + cool);
                tracing::warn!(connection = %id, failures = h.consecutive_failures, "connection taken out of its pool");
            }
        } else {
            h.consecutive_failures = 0;
            h.out_until = None;
        }
    }

    /// A [`Picker`] over these pools at `now`.
    pub fn picker(&self, now: Timestamp) -> PoolPicker<'_> {
        PoolPicker { pools: self, now }
    }
}

impl Pool {
    /// The channel.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The channel's capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
}

impl ChannelDirectory for Pools {
    fn capabilities(&self, channel: &ChannelName) -> Option<&Capabilities> {
        self.pools.get(channel).map(|p| &p.capabilities)
    }

    fn serves(&self, channel: &ChannelName, connection: &ConnectionId) -> bool {
        self.index.get(connection).is_some_and(|(c, _)| c == channel)
    }
}

/// Picks from [`Pools`] at a fixed moment.
#[derive(Debug)]
pub struct PoolPicker<'a> {
    pools: &'a Pools,
    now: Timestamp,
}

impl Picker for PoolPicker<'_> {
    fn pick(&mut self, req: PickRequest<'_>) -> Option<(ConnectionId, Cost)> {
        let m = self.pools.pool(req.channel)?.pick(&req, self.now)?;
        Some((m.connection.id.clone(), m.connection.price))
    }
}
