//! The memory store's compact form of a cascade: its metadata, state and timeline as bytes.
//!
//! Held as Rust values, a cascade waiting on a status costs about 3 KB of heap in some thirty
//! small allocations (strings, vectors, boxed errors, the plan's steps, the timeline's events);
//! packed, a few hundred bytes in two. The bytes never leave the process, so the encoding need
//! not be stable across versions, and it can be terse:
//!
//! - integers are LEB128 varints (signed ones zigzagged), times are seconds and nanoseconds,
//!   the seconds counted from the cascade's creation once it is known (a byte or two, not five);
//! - channel and connection names are numbers into one table for the process, kept once
//!   there; each thread keeps its own copy of what it has used, so packing takes no lock.
//!   Only names from configuration go in the table (steps, connections, attempts): names a
//!   request brings (the channels of a contact's own addresses) are written as text, so no
//!   request can make the table grow;
//! - a step whose content is the same shared value as an earlier step's says which step;
//! - rare, rich parts (attachments, buttons, provider templates, skip reasons, campaign
//!   membership) are written as JSON inside the bytes, which keeps this file short at no cost
//!   to the common case; JSON values (custom fields, caller metadata) are packed as values,
//!   numbers exactly.
//!
//! Every struct is written field by field by [`packed_struct!`], which takes it apart and
//! builds it again without `..`, and every enum by an exhaustive `match`: a field or variant
//! added to the model and not here fails to compile.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use foldhash::HashMap;

use crate::machine::{CascadeState, Phase};
use crate::model::*;
use crate::plan::{ChannelAddress, OpenWindow, Plan, PlannedStep};
use crate::store::{CampaignMember, CascadeMeta};

/// The names (channels and connections) packed cascades refer to by number: one table for
/// the process, only ever added to.
#[derive(Debug, Default)]
struct Names {
    numbers: HashMap<Arc<str>, u32>,
    texts: Vec<Arc<str>>,
}

static NAMES: LazyLock<Mutex<Names>> = LazyLock::new(Mutex::default);

/// What one thread has seen of [`NAMES`].
#[derive(Default)]
struct Seen {
    /// Numbers by the address of a name's text; the entry holds the text, so the address
    /// cannot be reused for another while it is here.
    numbers: HashMap<usize, (Arc<str>, u32)>,
    /// A copy of the table's first entries.
    texts: Vec<Arc<str>>,
}

/// Names of other texts than the table's own (`ChannelName::new` in a request) also land in
/// `Seen::numbers`; past this many it starts again.
const SEEN_MAX: usize = 4_096;

thread_local! {
    static SEEN: RefCell<Seen> = RefCell::new(Seen::default());
}

fn with_table<T>(f: impl FnOnce(&mut Names) -> T) -> T {
    f(&mut NAMES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The number of the name `text`, given one if it has none.
fn name_number(seen: &mut Seen, text: &Arc<str>) -> u32 {
    let address = Arc::as_ptr(text) as *const u8 as usize;
    if let Some((_, n)) = seen.numbers.get(&address) {
        return *n;
    }
    let n = with_table(|t| match t.numbers.get(&**text) {
        Some(n) => *n,
        None => {
            let n = u32::try_from(t.texts.len()).expect("fewer than 2^32 names");
            t.texts.push(text.clone());
            t.numbers.insert(text.clone(), n);
            n
        }
    });
    if seen.numbers.len() >= SEEN_MAX {
        seen.numbers.clear();
    }
    seen.numbers.insert(address, (text.clone(), n));
    n
}

/// The text of name number `n`, if it has been given.
fn name_text(n: usize) -> Option<Arc<str>> {
    SEEN.with_borrow_mut(|seen| {
        if n >= seen.texts.len() {
            with_table(|t| seen.texts.extend_from_slice(t.texts.get(seen.texts.len()..).unwrap_or_default()));
        }
        seen.texts.get(n).cloned()
    })
}

/// Packed bytes that do not decode: a bug in this file, never bad input (only it writes them).
#[derive(Debug, thiserror::Error)]
#[error("packed cascade unreadable: {0}")]
pub(super) struct Malformed(&'static str);

/// Writes values to a buffer.
pub(super) struct Packer<'a> {
    buf: &'a mut Vec<u8>,
    seen: &'a mut Seen,
    /// Times are written as seconds from this (see [`Packer::set_base`]).
    base: i64,
}

/// What `write` packs, in a buffer made with room for `capacity` bytes (it grows if need be).
pub(super) fn pack(capacity: usize, write: impl FnOnce(&mut Packer<'_>)) -> Vec<u8> {
    let mut buf = Vec::with_capacity(capacity);
    SEEN.with_borrow_mut(|seen| write(&mut Packer { buf: &mut buf, seen, base: 0 }));
    buf
}

/// Reads values back, in the order they were written.
pub(super) struct Unpacker<'a> {
    data: &'a [u8],
    base: i64,
}

impl Packer<'_> {
    /// Writes the times that follow as seconds from `t`'s; the reader must be given the same.
    pub(super) fn set_base(&mut self, t: Timestamp) {
        self.base = t.timestamp();
    }

    /// Bytes written so far.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn put<T: Pack>(&mut self, value: &T) -> &mut Self {
        value.pack(self);
        self
    }

    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    fn varint(&mut self, mut v: u64) {
        if v < 0x80 {
            self.buf.push(v as u8);
            return;
        }
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        let text = serde_json::to_vec(value).expect("model values serialize to JSON");
        self.bytes(&text);
    }
}

impl<'a> Unpacker<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self { data, base: 0 }
    }

    /// Reads times written after [`Packer::set_base`] with `t`.
    pub(super) fn set_base(&mut self, t: Timestamp) {
        self.base = t.timestamp();
    }

    /// Whether everything has been read.
    pub(super) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(super) fn get<T: Pack>(&mut self) -> Result<T, Malformed> {
        T::unpack(self)
    }

    fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.data.split_first().ok_or(Malformed("ends early"))?;
        self.data = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Malformed("varint too long"))
    }

    fn small<T: TryFrom<u64>>(&mut self) -> Result<T, Malformed> {
        T::try_from(self.varint()?).map_err(|_| Malformed("integer out of range"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.small::<usize>()?;
        if len > self.data.len() {
            return Err(Malformed("ends early"));
        }
        let (b, rest) = self.data.split_at(len);
        self.data = rest;
        Ok(b)
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Malformed> {
        serde_json::from_slice(self.bytes()?).map_err(|_| Malformed("embedded JSON"))
    }
}

/// A value with a packed form.
pub(super) trait Pack: Sized {
    fn pack(&self, w: &mut Packer<'_>);
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed>;
}

macro_rules! packed_unsigned {
    ($($t:ty),*) => {$(
        impl Pack for $t {
            fn pack(&self, w: &mut Packer<'_>) {
                w.varint(u64::from(*self));
            }
            fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
                r.small()
            }
        }
    )*};
}
packed_unsigned!(u16, u32, u64);

impl Pack for i64 {
    fn pack(&self, w: &mut Packer<'_>) {
        let v = *self;
        w.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        let v = r.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
}

impl Pack for bool {
    fn pack(&self, w: &mut Packer<'_>) {
        w.byte(u8::from(*self));
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        match r.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed("bool")),
        }
    }
}

impl Pack for String {
    fn pack(&self, w: &mut Packer<'_>) {
        w.bytes(self.as_bytes());
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        std::str::from_utf8(r.bytes()?).map(str::to_owned).map_err(|_| Malformed("text"))
    }
}

impl<T: Pack> Pack for Option<T> {
    fn pack(&self, w: &mut Packer<'_>) {
        match self {
            None => w.byte(0),
            Some(v) => {
                w.byte(1);
                v.pack(w);
            }
        }
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        match r.byte()? {
            0 => Ok(None),
            1 => T::unpack(r).map(Some),
            _ => Err(Malformed("option")),
        }
    }
}

impl<T: Pack> Pack for Vec<T> {
    fn pack(&self, w: &mut Packer<'_>) {
        w.varint(self.len() as u64);
        for v in self {
            v.pack(w);
        }
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        let len = r.small::<usize>()?;
        // Every element takes at least a byte: a bad length cannot ask for more than is there.
        let mut out = Vec::with_capacity(len.min(r.data.len()));
        for _ in 0..len {
            out.push(T::unpack(r)?);
        }
        Ok(out)
    }
}

impl<T: Pack> Pack for Box<T> {
    fn pack(&self, w: &mut Packer<'_>) {
        (**self).pack(w);
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        T::unpack(r).map(Box::new)
    }
}

impl<T: Pack> Pack for Arc<T> {
    fn pack(&self, w: &mut Packer<'_>) {
        (**self).pack(w);
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        T::unpack(r).map(Arc::new)
    }
}

impl<T: Pack> Pack for Arc<[T]> {
    fn pack(&self, w: &mut Packer<'_>) {
        w.varint(self.len() as u64);
        for v in self.iter() {
            v.pack(w);
        }
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        Vec::<T>::unpack(r).map(Arc::from)
    }
}

impl<K: Pack + Ord, V: Pack> Pack for BTreeMap<K, V> {
    fn pack(&self, w: &mut Packer<'_>) {
        w.varint(self.len() as u64);
        for (k, v) in self {
            k.pack(w);
            v.pack(w);
        }
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        let len = r.small::<usize>()?;
        let mut out = BTreeMap::new();
        for _ in 0..len {
            let k = K::unpack(r)?;
            out.insert(k, V::unpack(r)?);
        }
        Ok(out)
    }
}

impl Pack for Timestamp {
    fn pack(&self, w: &mut Packer<'_>) {
        // Both within chrono's range (±262,000 years): the difference cannot overflow.
        (self.timestamp() - w.base).pack(w);
        w.varint(u64::from(self.timestamp_subsec_nanos()));
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        let secs = i64::unpack(r)?.checked_add(r.base).ok_or(Malformed("time"))?;
        let nanos = r.small::<u32>()?;
        Timestamp::from_timestamp(secs, nanos).ok_or(Malformed("time"))
    }
}

impl Pack for Duration {
    fn pack(&self, w: &mut Packer<'_>) {
        w.varint(self.as_secs());
        w.varint(u64::from(self.subsec_nanos()));
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        let secs = r.varint()?;
        let nanos = r.small::<u32>()?;
        if nanos >= 1_000_000_000 {
            return Err(Malformed("duration"));
        }
        Ok(Duration::new(secs, nanos))
    }
}

impl Pack for CascadeId {
    fn pack(&self, w: &mut Packer<'_>) {
        w.buf.extend_from_slice(self.as_uuid().as_bytes());
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        let (bytes, rest) = r.data.split_first_chunk::<16>().ok_or(Malformed("ends early"))?;
        r.data = rest;
        Ok(CascadeId::from_uuid(uuid::Uuid::from_bytes(*bytes)))
    }
}

impl Pack for Cost {
    fn pack(&self, w: &mut Packer<'_>) {
        self.micros().pack(w);
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        i64::unpack(r).map(Cost::from_micros)
    }
}

macro_rules! packed_name {
    ($($t:ident),*) => {$(
        impl Pack for $t {
            fn pack(&self, w: &mut Packer<'_>) {
                let n = name_number(w.seen, self.shared());
                w.varint(u64::from(n));
            }
            fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
                name_text(r.small()?).map($t::from_shared).ok_or(Malformed("name number"))
            }
        }
    )*};
}
packed_name!(ChannelName, ConnectionId);

/// Types written as JSON: rare in stored cascades, and rich.
macro_rules! packed_as_json {
    ($($t:ty),*) => {$(
        impl Pack for $t {
            fn pack(&self, w: &mut Packer<'_>) {
                w.json(self);
            }
            fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
                r.json()
            }
        }
    )*};
}
packed_as_json!(Attachment, Button, ProviderTemplate, SkipReason, CampaignMember);

impl Pack for serde_json::Value {
    fn pack(&self, w: &mut Packer<'_>) {
        use serde_json::Value;
        match self {
            Value::Null => w.byte(0),
            Value::Bool(b) => w.byte(1 + u8::from(*b)),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    w.byte(3);
                    w.varint(u);
                } else if let Some(i) = n.as_i64() {
                    w.byte(4);
                    i.pack(w);
                } else {
                    // A JSON number is finite: its bits read back as the same number.
                    w.byte(5);
                    w.buf.extend_from_slice(&n.as_f64().unwrap_or_default().to_le_bytes());
                }
            }
            Value::String(text) => {
                w.byte(6);
                text.pack(w);
            }
            Value::Array(items) => {
                w.byte(7);
                items.pack(w);
            }
            Value::Object(map) => {
                w.byte(8);
                w.varint(map.len() as u64);
                for (k, v) in map {
                    w.put(k).put(v);
                }
            }
        }
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        use serde_json::Value;
        Ok(match r.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::from(r.varint()?),
            4 => Value::from(i64::unpack(r)?),
            5 => {
                let (bits, rest) = r.data.split_first_chunk::<8>().ok_or(Malformed("ends early"))?;
                r.data = rest;
                serde_json::Number::from_f64(f64::from_le_bytes(*bits)).map(Value::Number).ok_or(Malformed("number"))?
            }
            6 => Value::String(r.get()?),
            7 => Value::Array(r.get()?),
            8 => {
                let len = r.small::<usize>()?;
                let mut map = serde_json::Map::new();
                for _ in 0..len {
                    let k: String = r.get()?;
                    map.insert(k, r.get()?);
                }
                Value::Object(map)
            }
            _ => return Err(Malformed("JSON value")),
        })
    }
}

/// A name a request brought, written as its text (see the module's notes).
fn put_name_text(w: &mut Packer<'_>, name: &ChannelName) {
    w.bytes(name.as_str().as_bytes());
}

fn get_name_text(r: &mut Unpacker<'_>) -> Result<ChannelName, Malformed> {
    String::unpack(r).map(ChannelName::from)
}

impl Pack for Contact {
    fn pack(&self, w: &mut Packer<'_>) {
        let Contact { name, phone, email, addresses, fields } = self;
        w.put(name).put(phone).put(email);
        w.varint(addresses.len() as u64);
        for (channel, address) in addresses {
            put_name_text(w, channel);
            address.pack(w);
        }
        fields.pack(w);
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        let (name, phone, email) = (r.get()?, r.get()?, r.get()?);
        let mut addresses = BTreeMap::new();
        for _ in 0..r.small::<usize>()? {
            let channel = get_name_text(r)?;
            addresses.insert(channel, r.get()?);
        }
        Ok(Contact { name, phone, email, addresses, fields: r.get()? })
    }
}

impl Pack for ChannelAddress {
    fn pack(&self, w: &mut Packer<'_>) {
        let ChannelAddress { channel, address } = self;
        put_name_text(w, channel);
        address.pack(w);
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        Ok(ChannelAddress { channel: get_name_text(r)?, address: r.get()? })
    }
}

/// Enums without data, as their position in the list given.
macro_rules! packed_unit_enum {
    ($t:ident { $($v:ident),* $(,)? }) => {
        impl Pack for $t {
            fn pack(&self, w: &mut Packer<'_>) {
                // Exhaustive: a variant missing from the list fails to compile.
                match self { $($t::$v)|* => {} }
                const ALL: &[$t] = &[$($t::$v),*];
                let i = ALL.iter().position(|v| v == self).expect("listed above");
                w.byte(i as u8);
            }
            fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
                const ALL: &[$t] = &[$($t::$v),*];
                ALL.get(usize::from(r.byte()?)).copied().ok_or(Malformed(stringify!($t)))
            }
        }
    };
}
packed_unit_enum!(Status { Accepted, Sent, Delivered, Read, Clicked, Replied, Failed });
packed_unit_enum!(ErrorClass { Unreachable, Rejected, Transient, Connection });
packed_unit_enum!(AttemptState { Sending, Accepted, Failed, Unknown });
packed_unit_enum!(AddressKind { ChannelId, Phone, Email });

/// Structs, field by field in the order listed; every field must be listed.
macro_rules! packed_struct {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl Pack for $t {
            fn pack(&self, w: &mut Packer<'_>) {
                let $t { $($f),* } = self;
                $( $f.pack(w); )*
            }
            fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
                Ok($t { $($f: Pack::unpack(r)?),* })
            }
        }
    };
}
packed_struct!(CascadeMeta { contact, idempotency_key, fingerprint, callback_url, metadata, owner, campaign });
packed_struct!(Address { kind, value });
packed_struct!(Content { text, subject, html, attachment, buttons, template });
packed_struct!(RetryPolicy { max_sends_per_step, initial_backoff, max_backoff });
packed_struct!(OpenWindow { connection, until });
packed_struct!(SendError { class, code, detail, retry_after });
packed_struct!(StatusRecord { status, at, provider_at });
packed_struct!(Attempt {
    number,
    step,
    channel,
    connection,
    state,
    provider_message_id,
    highest,
    statuses,
    error,
    cost,
    started_at,
});
packed_struct!(StepFailure { step, channel, class, reason });
packed_struct!(Event { at, kind });

/// A state without its plan, which never changes after creation: a store packs the plan once,
/// with the metadata, and each save only this.
pub(super) struct StateBody<'a>(pub(super) &'a CascadeState);

impl StateBody<'_> {
    pub(super) fn pack(&self, w: &mut Packer<'_>) {
        let CascadeState {
            id,
            created_at,
            plan: _,
            phase,
            cursor,
            step_started_at,
            excluded,
            attempts,
            failures,
            outcome,
            finished_at,
        } = self.0;
        w.put(id).put(created_at);
        w.set_base(*created_at);
        w.put(phase).put(cursor).put(step_started_at).put(excluded);
        w.put(attempts).put(failures).put(outcome).put(finished_at);
    }

    /// When the cascade packed in `body` was created: the base of the times of its events.
    pub(super) fn created_at(body: &[u8]) -> Result<Timestamp, Malformed> {
        let mut r = Unpacker::new(body);
        r.get::<CascadeId>()?;
        r.get()
    }

    /// The state packed by [`StateBody::pack`], with its plan.
    pub(super) fn unpack(r: &mut Unpacker<'_>, plan: Arc<Plan>) -> Result<CascadeState, Malformed> {
        let id = r.get()?;
        let created_at = r.get()?;
        r.set_base(created_at);
        Ok(CascadeState {
            id,
            created_at,
            plan,
            phase: r.get()?,
            cursor: r.get()?,
            step_started_at: r.get()?,
            excluded: r.get()?,
            attempts: r.get()?,
            failures: r.get()?,
            outcome: r.get()?,
            finished_at: r.get()?,
        })
    }
}

/// A whole state: its plan, then the rest.
impl Pack for CascadeState {
    fn pack(&self, w: &mut Packer<'_>) {
        w.put(&self.plan);
        StateBody(self).pack(w);
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        let plan = r.get()?;
        StateBody::unpack(r, plan)
    }
}

impl Pack for Plan {
    fn pack(&self, w: &mut Packer<'_>) {
        let Plan { steps, first, late_success_wins, retry, expires_at, bulk, other_addresses } = self;
        w.varint(steps.len() as u64);
        for (i, step) in steps.iter().enumerate() {
            let PlannedStep { channel, until, timeout, address, content, links, skip, connections, sticky, window } =
                step;
            w.put(channel).put(until).put(timeout).put(address);
            // Steps usually share one rendered content: 0 for new content, k for step k-1's.
            match steps[..i].iter().position(|s| Arc::ptr_eq(&s.content, content)) {
                Some(k) => w.varint(k as u64 + 1),
                None => {
                    w.varint(0);
                    content.pack(w);
                }
            }
            w.put(links).put(skip).put(connections).put(sticky).put(window);
        }
        w.put(first).put(late_success_wins).put(retry).put(expires_at).put(bulk).put(other_addresses);
    }

    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        let len = r.small::<usize>()?;
        let mut steps: Vec<PlannedStep> = Vec::with_capacity(len.min(r.data.len()));
        for _ in 0..len {
            let (channel, until, timeout, address) = (r.get()?, r.get()?, r.get()?, r.get()?);
            let content = match r.small::<usize>()? {
                0 => Arc::new(r.get()?),
                k => steps.get(k - 1).map(|s| s.content.clone()).ok_or(Malformed("content reference"))?,
            };
            steps.push(PlannedStep {
                channel,
                until,
                timeout,
                address,
                content,
                links: r.get()?,
                skip: r.get()?,
                connections: r.get()?,
                sticky: r.get()?,
                window: r.get()?,
            });
        }
        Ok(Plan {
            steps,
            first: r.get()?,
            late_success_wins: r.get()?,
            retry: r.get()?,
            expires_at: r.get()?,
            bulk: r.get()?,
            other_addresses: r.get()?,
        })
    }
}

impl Pack for Phase {
    fn pack(&self, w: &mut Packer<'_>) {
        match self {
            Phase::Pending => w.byte(0),
            Phase::Sending { attempt } => {
                w.byte(1);
                attempt.pack(w);
            }
            Phase::Waiting { attempt, deadline } => {
                w.byte(2);
                w.put(attempt).put(deadline);
            }
            Phase::RetryAt { at, avoid } => {
                w.byte(3);
                w.put(at).put(avoid);
            }
            Phase::Finished => w.byte(4),
        }
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        Ok(match r.byte()? {
            0 => Phase::Pending,
            1 => Phase::Sending { attempt: r.get()? },
            2 => Phase::Waiting { attempt: r.get()?, deadline: r.get()? },
            3 => Phase::RetryAt { at: r.get()?, avoid: r.get()? },
            4 => Phase::Finished,
            _ => return Err(Malformed("phase")),
        })
    }
}

impl Pack for Outcome {
    fn pack(&self, w: &mut Packer<'_>) {
        match self {
            Outcome::Delivered { step, attempt, channel, connection, status } => {
                w.byte(0);
                w.put(step).put(attempt).put(channel).put(connection).put(status);
            }
            Outcome::Failed { steps } => {
                w.byte(1);
                steps.pack(w);
            }
            Outcome::Cancelled => w.byte(2),
            Outcome::Expired => w.byte(3),
        }
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        Ok(match r.byte()? {
            0 => Outcome::Delivered {
                step: r.get()?,
                attempt: r.get()?,
                channel: r.get()?,
                connection: r.get()?,
                status: r.get()?,
            },
            1 => Outcome::Failed { steps: r.get()? },
            2 => Outcome::Cancelled,
            3 => Outcome::Expired,
            _ => return Err(Malformed("outcome")),
        })
    }
}

impl Pack for EventKind {
    fn pack(&self, w: &mut Packer<'_>) {
        match self {
            EventKind::Created => w.byte(0),
            EventKind::ExistingChatFirst { step, channel, connection } => {
                w.byte(1);
                w.put(step).put(channel).put(connection);
            }
            EventKind::StepSkipped { step, channel, reason } => {
                w.byte(2);
                w.put(step).put(channel).put(reason);
            }
            EventKind::SendStarted { attempt, step, channel, connection } => {
                w.byte(3);
                w.put(attempt).put(step).put(channel).put(connection);
            }
            EventKind::Accepted { attempt, provider_message_id, cost } => {
                w.byte(4);
                w.put(attempt).put(provider_message_id).put(cost);
            }
            EventKind::SendFailed { attempt, error, retry_at } => {
                w.byte(5);
                w.put(attempt).put(error).put(retry_at);
            }
            EventKind::SendUnknown { attempt } => {
                w.byte(6);
                attempt.pack(w);
            }
            EventKind::Status { attempt, status, provider_at, error } => {
                w.byte(7);
                w.put(attempt).put(status).put(provider_at).put(error);
            }
            EventKind::StepFailed { failure } => {
                w.byte(8);
                failure.pack(w);
            }
            EventKind::Replied { channel } => {
                w.byte(9);
                channel.pack(w);
            }
            EventKind::Finished { outcome, cost } => {
                w.byte(10);
                w.put(outcome).put(cost);
            }
        }
    }
    fn unpack(r: &mut Unpacker<'_>) -> Result<Self, Malformed> {
        Ok(match r.byte()? {
            0 => EventKind::Created,
            1 => EventKind::ExistingChatFirst { step: r.get()?, channel: r.get()?, connection: r.get()? },
            2 => EventKind::StepSkipped { step: r.get()?, channel: r.get()?, reason: r.get()? },
            3 => EventKind::SendStarted { attempt: r.get()?, step: r.get()?, channel: r.get()?, connection: r.get()? },
            4 => EventKind::Accepted { attempt: r.get()?, provider_message_id: r.get()?, cost: r.get()? },
            5 => EventKind::SendFailed { attempt: r.get()?, error: r.get()?, retry_at: r.get()? },
            6 => EventKind::SendUnknown { attempt: r.get()? },
            7 => EventKind::Status { attempt: r.get()?, status: r.get()?, provider_at: r.get()?, error: r.get()? },
            8 => EventKind::StepFailed { failure: r.get()? },
            9 => EventKind::Replied { channel: r.get()? },
            10 => EventKind::Finished { outcome: r.get()?, cost: r.get()? },
            _ => return Err(Malformed("event")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> Timestamp {
        Timestamp::from_timestamp(secs, nanos).expect("in range")
    }

    fn pack<T: Pack>(value: &T) -> Vec<u8> {
        super::pack(0, |w| {
            w.put(value);
        })
    }

    /// Packs and unpacks `value`, and checks that every shorter prefix of its bytes is refused.
    fn round_trip<T: Pack + PartialEq + std::fmt::Debug>(value: &T) -> usize {
        let bytes = pack(value);
        let mut r = Unpacker::new(&bytes);
        assert_eq!(&r.get::<T>().expect("unpacks"), value);
        assert!(r.is_empty(), "every byte read");
        for len in 0..bytes.len() {
            assert!(Unpacker::new(&bytes[..len]).get::<T>().is_err(), "a prefix of {len} bytes was accepted");
        }
        bytes.len()
    }

    fn error() -> SendError {
        SendError {
            class: ErrorClass::Transient,
            code: "http_429".into(),
            detail: "slow down".into(),
            retry_after: Some(Duration::from_millis(1500)),
        }
    }

    fn rich_content() -> Content {
        Content {
            text: "Hi Ann — ваш заказ 🚚".into(),
            subject: Some("Order".into()),
            html: Some("<p>Hi</p>".into()),
            attachment: Some(Attachment {
                url: "https://cdn.example/a.pdf".into(),
                media_type: "application/pdf".into(),
                size: 123_456,
                filename: Some("a.pdf".into()),
            }),
            buttons: vec![Button { caption: "Track".into(), url: "https://t.example/1".into() }],
            template: Some(ProviderTemplate {
                name: "shipped".into(),
                language: "en_US".into(),
                params: vec!["A".into()],
            }),
        }
    }

    fn state() -> CascadeState {
        let shared = Arc::new(Content { text: "plain".into(), ..Content::default() });
        let step = |channel: &str, content: &Arc<Content>| PlannedStep {
            channel: channel.into(),
            until: Status::Delivered,
            timeout: Duration::from_secs(60),
            address: Some(Address { kind: AddressKind::Phone, value: "+15550001111".into() }),
            content: content.clone(),
            links: Vec::new(),
            skip: None,
            connections: None,
            sticky: None,
            window: None,
        };
        let mut rich = step("email", &Arc::new(rich_content()));
        rich.links = vec!["https://example.com/x".into()];
        rich.skip = Some(SkipReason::FileTooLarge { size: 10, limit: 5 });
        rich.connections = Some(Arc::from(vec![ConnectionId::new("mail-1"), ConnectionId::new("mail-2")]));
        rich.sticky = Some("mail-2".into());
        rich.window = Some(OpenWindow { connection: "mail-2".into(), until: at(1_800_000_000, 5) });
        let plan = Plan {
            steps: vec![step("whatsapp", &shared), rich, step("sms", &shared)],
            first: Some(2),
            late_success_wins: true,
            retry: RetryPolicy::default(),
            expires_at: at(1_800_086_400, 999_999_999),
            bulk: true,
            other_addresses: vec![ChannelAddress { channel: "telegram".into(), address: "42".into() }],
        };
        let attempt = Attempt {
            number: 1,
            step: 0,
            channel: "whatsapp".into(),
            connection: Some("wa-1".into()),
            state: AttemptState::Failed,
            provider_message_id: Some("wamid.1".into()),
            highest: Some(Status::Sent),
            statuses: vec![StatusRecord { status: Status::Sent, at: at(1_800_000_001, 0), provider_at: None }],
            error: Some(Box::new(error())),
            cost: Cost::from_micros(-7),
            started_at: at(1_800_000_000, 123),
        };
        CascadeState {
            id: CascadeId::new(),
            created_at: at(1_800_000_000, 0),
            plan: Arc::new(plan),
            phase: Phase::RetryAt { at: at(1_800_000_030, 1), avoid: Some("wa-1".into()) },
            cursor: 1,
            step_started_at: Some(at(-5, 0)),
            excluded: vec!["wa-2".into()],
            attempts: vec![attempt.clone(), Attempt { number: 2, error: None, statuses: Vec::new(), ..attempt }],
            failures: vec![StepFailure {
                step: 0,
                channel: "whatsapp".into(),
                class: Some(ErrorClass::Unreachable),
                reason: "not on WhatsApp".into(),
            }],
            outcome: Some(Outcome::Failed { steps: Vec::new() }),
            finished_at: Some(at(1_800_000_100, 0)),
        }
    }

    #[test]
    fn every_part_of_a_state_reads_back() {
        let mut s = state();
        round_trip(&s);
        for phase in [
            Phase::Pending,
            Phase::Sending { attempt: 3 },
            Phase::Waiting { attempt: 2, deadline: at(1_900_000_000, 7) },
            Phase::RetryAt { at: at(0, 0), avoid: None },
            Phase::Finished,
        ] {
            s.phase = phase;
            round_trip(&s);
        }
        for outcome in [
            Outcome::Delivered {
                step: 1,
                attempt: 4,
                channel: "sms".into(),
                connection: None,
                status: Status::Replied,
            },
            Outcome::Cancelled,
            Outcome::Expired,
        ] {
            s.outcome = Some(outcome);
            round_trip(&s);
        }
    }

    #[test]
    fn steps_sharing_content_still_share_it_when_read_back() {
        let bytes = pack(&state());
        let back: CascadeState = Unpacker::new(&bytes).get().expect("unpacks");
        let steps = &back.plan.steps;
        assert!(Arc::ptr_eq(&steps[0].content, &steps[2].content));
        assert!(!Arc::ptr_eq(&steps[0].content, &steps[1].content));
    }

    #[test]
    fn metadata_reads_back_with_its_rich_parts() {
        let mut contact = Contact::with_phone("+15550001111").name("Ann");
        contact.email = Some("ann@example.com".into());
        contact.addresses.insert("telegram".into(), "42".into());
        contact.fields.insert("city".into(), serde_json::json!("Lisbon"));
        let mut meta = CascadeMeta {
            contact,
            idempotency_key: Some("k".into()),
            fingerprint: "abc".into(),
            callback_url: Some("https://crm.example/cb".into()),
            metadata: serde_json::json!({"lead": 7, "tags": ["a", null]}),
            owner: Some("key:crm".into()),
            campaign: Some(CampaignMember { campaign: CampaignId::new(), seq: 9 }),
        };
        round_trip(&meta);
        meta.metadata = serde_json::Value::Null;
        round_trip(&meta);
    }

    #[test]
    fn json_values_read_back_exactly() {
        let value = serde_json::json!({
            "floats": [0.1, 1e300, -2.5e-308, 2.718281828459045e-7],
            "integers": [0, -1, u64::MAX, i64::MIN],
            "nested": {"empty": {}, "list": [], "text": "ünïcode", "yes": true, "no": false, "none": null},
        });
        round_trip(&value);
        let back: serde_json::Value = Unpacker::new(&pack(&value)).get().expect("unpacks");
        assert_eq!(back["floats"][0].as_f64(), Some(0.1));
        assert_eq!(back["integers"][2].as_u64(), Some(u64::MAX));
    }

    #[test]
    fn channels_a_request_names_are_written_as_text_not_numbered() {
        let contact = Contact::default().address("request-only-channel", "42");
        let bytes = pack(&contact);
        let text = b"request-only-channel";
        assert!(bytes.windows(text.len()).any(|w| w == text), "the channel's name is in the bytes");
        round_trip(&contact);
        let other = ChannelAddress { channel: "another-request-channel".into(), address: "7".into() };
        let bytes = pack(&other);
        assert!(bytes.starts_with(b"\x17another-request-channel"));
        round_trip(&other);
    }

    #[test]
    fn every_kind_of_event_reads_back() {
        let failure = StepFailure { step: 1, channel: "sms".into(), class: None, reason: "timed out".into() };
        let kinds = [
            EventKind::Created,
            EventKind::ExistingChatFirst { step: 2, channel: "telegram".into(), connection: Some("tg-1".into()) },
            EventKind::StepSkipped { step: 0, channel: "viber".into(), reason: SkipReason::NoAddress },
            EventKind::SendStarted { attempt: 1, step: 0, channel: "sms".into(), connection: None },
            EventKind::Accepted { attempt: 1, provider_message_id: "SM1".into(), cost: Cost::from_micros(7_500) },
            EventKind::SendFailed { attempt: 1, error: Box::new(error()), retry_at: Some(at(1_800_000_002, 0)) },
            EventKind::SendUnknown { attempt: 2 },
            EventKind::Status {
                attempt: 1,
                status: Status::Failed,
                provider_at: Some(at(1_800_000_003, 4)),
                error: Some(Box::new(error())),
            },
            EventKind::StepFailed { failure: failure.clone() },
            EventKind::Replied { channel: "sms".into() },
            EventKind::Finished { outcome: Outcome::Failed { steps: vec![failure] }, cost: Cost::ZERO },
        ];
        for kind in kinds {
            round_trip(&Event { at: at(1_800_000_000, 42), kind });
        }
    }

    #[test]
    fn names_are_kept_once_and_read_back_on_any_thread() {
        let channel = pack(&ChannelName::new("names-test-a"));
        assert!(channel.len() <= 2, "a name is written as its number");
        assert_eq!(pack(&ConnectionId::new("names-test-a")), channel, "one number per text");
        assert_ne!(pack(&ChannelName::new("names-test-b")), channel);
        let other = std::thread::spawn(move || Unpacker::new(&channel).get::<ConnectionId>().expect("unpacks"));
        assert_eq!(other.join().expect("thread"), "names-test-a");
        let unknown = pack(&(u64::from(u32::MAX)));
        assert!(Unpacker::new(&unknown).get::<ChannelName>().is_err(), "an unknown number is refused");
    }

    #[test]
    fn times_read_back_from_the_base_they_were_written_from() {
        let base = at(1_800_000_000, 0);
        let from_base = |t: &Timestamp| {
            super::pack(0, |w| {
                w.set_base(base);
                w.put(t);
            })
        };
        for t in [base, at(1_800_000_059, 999_999_999), at(-1, 0), Timestamp::MIN_UTC, Timestamp::MAX_UTC] {
            let bytes = from_base(&t);
            let mut r = Unpacker::new(&bytes);
            r.set_base(base);
            assert_eq!(r.get::<Timestamp>().expect("unpacks"), t);
        }
        let near = at(1_800_000_030, 0);
        assert_eq!(from_base(&near).len(), 2, "a second's count and no nanoseconds");
        assert_eq!(pack(&near).len(), 6, "the absolute second takes five bytes");
    }

    #[test]
    fn integers_and_times_keep_their_extremes() {
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            round_trip(&Cost::from_micros(v));
        }
        for v in [0u64, 127, 128, u64::MAX] {
            round_trip(&v);
        }
        for t in [Timestamp::MIN_UTC, Timestamp::UNIX_EPOCH, Timestamp::MAX_UTC, at(-1, 999_999_999)] {
            round_trip(&t);
        }
        round_trip(&Duration::MAX);
        assert!(Unpacker::new(&[0x80; 11]).get::<u64>().is_err(), "an endless varint is refused");
    }
}
