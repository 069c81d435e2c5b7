//! The SQLite writer's own connection, for the writes every cascade makes.
//!
//! sqlx runs each SQLite connection on a worker thread of its own, and every statement is a
//! hand-off to that thread and back: a batch of a hundred writes waited on a dozen such round
//! trips, and the waiting, not SQLite's work, set how long a commit took. Here the writer's
//! thread owns a [`rusqlite`] connection and runs a batch of creates, saves, conversation
//! touches and claims start to finish itself: `BEGIN IMMEDIATE`, one prepared statement per
//! row (kept prepared between batches), `COMMIT`, with no thread in between.
//!
//! Any other write (campaigns, policies, purges, held requests) goes through the sqlx
//! connection as before ([`Direct::takes`]): a batch holding both kinds is split, this
//! connection's part first. Both connections belong to the store's one writer loop, which runs
//! one batch at a time, so they do not contend with each other for the database's write lock;
//! another process (or another store on the same file) may hold it, and then this connection
//! waits for it, up to its busy timeout, blocking the writer's thread meanwhile.

use std::path::Path;
use std::time::Duration;

use cascade_engine::store::{AttemptRef, CascadeRecord, Conversation, Created, OutboxItem};
use cascade_engine::{CascadeId, ChannelName, StoreError};
use rusqlite::types::ValueRef;
use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use uuid::Uuid;

use crate::batch::{WriteOp, WriteOut};
use crate::codec::{EventsRow, NewCascade, OutboxColumns, SaveRow};
use crate::sqlite::{BUSY_TIMEOUT, CLAIM, CLAIM_OUTBOX, Durability, RETRY_OUTBOX, TOUCH};

/// Statements the connection keeps prepared: those of [`Sql`], with room to spare.
const STATEMENTS: usize = 32;

/// The statements the writer runs.
#[derive(Clone, Copy)]
enum Sql {
    CreateCascade,
    KeyTaken,
    CreateMeta,
    Address,
    Event,
    FindSaved,
    Update,
    ProviderRef,
    DropAddress,
    Callback,
    Recipient,
    Touch,
    Claim,
    ClaimOutbox,
    CallbackDone,
    CallbackRetry,
}

impl Sql {
    /// Every statement, in the order of their discriminants (a test checks it).
    const ALL: [Self; 16] = [
        Self::CreateCascade,
        Self::KeyTaken,
        Self::CreateMeta,
        Self::Address,
        Self::Event,
        Self::FindSaved,
        Self::Update,
        Self::ProviderRef,
        Self::DropAddress,
        Self::Callback,
        Self::Recipient,
        Self::Touch,
        Self::Claim,
        Self::ClaimOutbox,
        Self::CallbackDone,
        Self::CallbackRetry,
    ];
    const COUNT: usize = Self::ALL.len();

    fn text(self) -> &'static str {
        match self {
            Self::CreateCascade => {
                "INSERT INTO cascades (id, version, wake_at, state, created_at, finished_at, idempotency_key, \
                 fingerprint, channels, owner, event_count, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT DO NOTHING"
            }
            Self::KeyTaken => "SELECT id, fingerprint FROM cascades WHERE idempotency_key = ?1",
            Self::CreateMeta => "INSERT INTO cascade_meta (id, meta) VALUES (?1, ?2)",
            Self::Address => {
                "INSERT INTO addresses (channel, address, cascade_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"
            }
            Self::Event => "INSERT INTO events (cascade_id, seq, body) VALUES (?1, ?2, ?3)",
            // Looked up first and then updated by rowid, rather than `UPDATE … RETURNING`:
            // SQLite runs a `RETURNING` clause as a trigger that collects its rows in a
            // temporary table, so every such update opened and closed a B-tree and kept a
            // statement journal, which cost more than the update itself.
            Self::FindSaved => "SELECT rowid, version, event_count FROM cascades WHERE id = ?1",
            Self::Update => {
                "UPDATE cascades SET version = ?2, wake_at = ?3, state = ?4, finished_at = ?5, body = ?6, \
                 event_count = ?7 WHERE rowid = ?1"
            }
            Self::ProviderRef => {
                "INSERT INTO provider_refs (adapter, provider_message_id, cascade_id, attempt) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (adapter, provider_message_id) DO UPDATE SET cascade_id = excluded.cascade_id, \
                 attempt = excluded.attempt"
            }
            Self::DropAddress => "DELETE FROM addresses WHERE channel = ?1 AND address = ?2 AND cascade_id = ?3",
            Self::Callback => "INSERT INTO outbox (cascade_id, url, body, next_at) VALUES (?1, ?2, ?3, ?4)",
            Self::Recipient => {
                "UPDATE campaign_recipients SET outcome = ?3, channel = ?4, cost = ?5, reason = ?6, result_at = ?7 \
                 WHERE campaign_id = ?1 AND seq = ?2"
            }
            Self::Touch => TOUCH,
            Self::Claim => CLAIM,
            Self::ClaimOutbox => CLAIM_OUTBOX,
            Self::CallbackDone => "DELETE FROM outbox WHERE id = ?1",
            Self::CallbackRetry => RETRY_OUTBOX,
        }
    }
}

/// A batch's statements, each taken from the connection's cache on first use and kept for the
/// rest of the batch: a batch of a hundred writes looks each text up once, not once per row.
struct Statements<'t> {
    tx: &'t Transaction<'t>,
    open: [Option<CachedStatement<'t>>; Sql::COUNT],
}

impl<'t> Statements<'t> {
    fn new(tx: &'t Transaction<'t>) -> Self {
        Self { tx, open: std::array::from_fn(|_| None) }
    }

    fn get(&mut self, sql: Sql) -> rusqlite::Result<&mut CachedStatement<'t>> {
        let slot = &mut self.open[sql as usize];
        let statement = match slot.take() {
            Some(statement) => statement,
            None => self.tx.prepare_cached(sql.text())?,
        };
        Ok(slot.insert(statement))
    }
}

/// The writer's connection.
pub(crate) struct Direct {
    conn: Connection,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct").finish_non_exhaustive()
    }
}

/// A database error as a store error: a value of the wrong type is corrupt data, anything else
/// a database that cannot be used now.
fn failed(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnName(_)
        | rusqlite::Error::Utf8Error(_) => StoreError::Corrupt(e.to_string()),
        e => StoreError::Unavailable(e.to_string()),
    }
}

type Outcome = Result<WriteOut, StoreError>;

impl Direct {
    /// Opens the database at `path` (its schema already migrated) for writing.
    pub(crate) fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // WAL is a property of the file, set when the store opened it; these two are the
            // connection's own and must match the sqlx connections'.
            conn.pragma_update(None, "synchronous", durability.synchronous())?;
            conn.pragma_update(None, "temp_store", "MEMORY")?;
            // As on the sqlx connections (the bundled SQLite turns them on by default).
            conn.pragma_update(None, "foreign_keys", "OFF")?;
            conn.set_prepared_statement_cache_capacity(STATEMENTS);
            Ok(conn)
        };
        let conn = open().map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        Ok(Self { conn })
    }

    /// Whether this connection runs `op`.
    pub(crate) fn takes(op: &WriteOp) -> bool {
        matches!(
            op,
            WriteOp::Create(_)
                | WriteOp::Save(_)
                | WriteOp::Touch(_)
                | WriteOp::Claim { .. }
                | WriteOp::ClaimOutbox { .. }
                | WriteOp::OutboxResult { .. }
        )
    }

    /// Runs `ops` (all of them ones it [`takes`](Self::takes)) in one transaction and commits
    /// it, as [`Backend::run`](crate::batch::Backend::run) does: creates and saves first, then
    /// the rest in their order, as the sqlx path runs a batch (so a claim in a batch never
    /// takes a cascade from under a save in the same batch).
    pub(crate) fn run(&mut self, ops: &[&WriteOp]) -> Result<Vec<Outcome>, StoreError> {
        let hot = |op: &WriteOp| matches!(op, WriteOp::Create(_) | WriteOp::Save(_));
        let result = (|| {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out: Vec<Option<Outcome>> = ops.iter().map(|_| None).collect();
            {
                let mut sql = Statements::new(&tx);
                for pass in [true, false] {
                    for (op, slot) in ops.iter().zip(out.iter_mut()) {
                        if hot(op) == pass {
                            *slot = Some(write(&mut sql, op)?);
                        }
                    }
                }
            }
            tx.commit()?;
            Ok(out
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("write not run".into()))))
                .collect())
        })();
        if result.is_err() && !self.conn.is_autocommit() {
            // The transaction's own rollback (when it was dropped) failed: make sure none is
            // left open for the next batch to nest in.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result.map_err(failed)
    }
}

/// Runs one write. An `Err` fails the whole batch; a refusal of this write alone (a version
/// conflict, a taken key) is the `Ok` value.
fn write(sql: &mut Statements<'_>, op: &WriteOp) -> rusqlite::Result<Outcome> {
    Ok(match op {
        WriteOp::Create(c) => create(sql, c)?,
        WriteOp::Save(s) => save(sql, s)?,
        WriteOp::Touch(c) => {
            sql.get(Sql::Touch)?.execute(params![
                c.channel,
                c.address,
                c.connection,
                c.last_inbound_at,
                c.last_delivery_at
            ])?;
            Ok(WriteOut::Done)
        }
        WriteOp::Claim { now, limit, until } => {
            let decoded: Vec<_> = sql
                .get(Sql::Claim)?
                .query_map(params![until, now, limit], |row| Ok(record(row)))?
                .collect::<Result<_, _>>()?;
            crate::codec::claimed(decoded).map(WriteOut::Claimed)
        }
        WriteOp::ClaimOutbox { now, limit, until } => {
            let decoded: Vec<_> = sql
                .get(Sql::ClaimOutbox)?
                .query_map(params![until, now, limit], |row| Ok(outbox(row)))?
                .collect::<Result<_, _>>()?;
            decoded.into_iter().collect::<Result<Vec<_>, _>>().map(|mut items| {
                items.sort_by_key(|i| i.id);
                WriteOut::Outbox(items)
            })
        }
        WriteOp::OutboxResult { id, error: None } => {
            sql.get(Sql::CallbackDone)?.execute([id])?;
            Ok(WriteOut::Done)
        }
        WriteOp::OutboxResult { id, error: Some((error, retry_at)) } => {
            sql.get(Sql::CallbackRetry)?.execute(params![id, error, retry_at])?;
            Ok(WriteOut::Done)
        }
        _ => Err(StoreError::Unavailable(format!("the direct writer does not run {op:?}"))),
    })
}

fn create(sql: &mut Statements<'_>, c: &NewCascade) -> rusqlite::Result<Outcome> {
    let inserted = sql.get(Sql::CreateCascade)?.execute(params![
        c.id.as_bytes(),
        c.version,
        c.wake_at,
        c.state,
        c.created_at,
        c.finished_at,
        c.idempotency_key,
        c.fingerprint,
        c.channels,
        c.owner,
        c.events.count,
        c.body,
    ])?;
    if inserted == 0 {
        // The key is taken (by an earlier cascade or one earlier in this batch), or the id.
        let existing = match &c.idempotency_key {
            Some(key) => sql
                .get(Sql::KeyTaken)?
                .query_row([key], |row| Ok((uuid(row.get_ref(0)?), row.get::<_, String>(1)?)))
                .optional()?,
            None => None,
        };
        return Ok(match existing {
            Some((Ok(id), fingerprint)) => Ok(WriteOut::Created(Created::Existing {
                id: CascadeId::from_uuid(id),
                same_request: fingerprint == c.fingerprint,
            })),
            Some((Err(e), _)) => Err(e),
            None => Err(StoreError::Corrupt(format!("cascade {} already exists", c.id))),
        });
    }
    sql.get(Sql::CreateMeta)?.execute(params![c.id.as_bytes(), c.meta])?;
    events(sql, c.id, 0, &c.events)?;
    let address = sql.get(Sql::Address)?;
    for (channel, a) in &c.addresses {
        address.execute(params![channel, a, c.id.as_bytes()])?;
    }
    Ok(Ok(WriteOut::Created(Created::New)))
}

fn save(sql: &mut Statements<'_>, s: &SaveRow) -> rusqlite::Result<Outcome> {
    let found: Option<(i64, i64, i64)> = sql
        .get(Sql::FindSaved)?
        .query_row([s.id.as_bytes()], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let id = || CascadeId::from_uuid(s.id);
    let Some((rowid, stored_version, first)) = found else {
        return Ok(Err(StoreError::NotFound(id())));
    };
    if stored_version != s.expected_version {
        return Ok(Err(StoreError::Conflict(id())));
    }
    sql.get(Sql::Update)?.execute(params![
        rowid,
        stored_version + 1,
        s.wake_at,
        s.state,
        s.finished_at,
        s.body,
        first + s.events.count
    ])?;
    events(sql, s.id, first, &s.events)?;
    if !s.provider_refs.is_empty() {
        let refs = sql.get(Sql::ProviderRef)?;
        for r in &s.provider_refs {
            refs.execute(params![r.adapter.as_str(), r.provider_message_id, s.id.as_bytes(), i64::from(r.attempt)])?;
        }
    }
    if !s.drop_addresses.is_empty() {
        let drop = sql.get(Sql::DropAddress)?;
        for (channel, a) in &s.drop_addresses {
            drop.execute(params![channel, a, s.id.as_bytes()])?;
        }
    }
    if let Some(o) = &s.outbox {
        sql.get(Sql::Callback)?.execute(params![s.id.as_bytes(), o.url, o.body, o.next_at])?;
    }
    if let Some(r) = &s.recipient {
        sql.get(Sql::Recipient)?.execute(params![
            r.campaign.as_bytes(),
            r.seq,
            r.outcome,
            r.channel,
            r.cost,
            r.reason,
            r.at
        ])?;
    }
    Ok(Ok(WriteOut::Saved((stored_version + 1) as u64)))
}

/// Appends a write's timeline entries, the first numbered `first`.
fn events(sql: &mut Statements<'_>, id: Uuid, first: i64, row: &EventsRow) -> rusqlite::Result<()> {
    if let Some(body) = &row.body {
        sql.get(Sql::Event)?.execute(params![id.as_bytes(), first, body])?;
    }
    Ok(())
}

/// An id column (16 bytes, as sqlx writes a `Uuid`).
fn uuid(value: ValueRef<'_>) -> Result<Uuid, StoreError> {
    match value {
        ValueRef::Blob(b) => {
            Uuid::from_slice(b).map_err(|e| StoreError::Corrupt(format!("an id of {} bytes: {e}", b.len())))
        }
        other => Err(StoreError::Corrupt(format!("an id stored as {:?}", other.data_type()))),
    }
}

/// A text column, borrowed.
fn text<'r>(row: &'r Row<'_>, column: &str) -> Result<Option<&'r str>, StoreError> {
    match row.get_ref(column).map_err(failed)? {
        ValueRef::Null => Ok(None),
        value => value.as_str().map(Some).map_err(|e| StoreError::Corrupt(format!("column {column}: {e}"))),
    }
}

/// A stored cascade from the columns of [`record_columns!`](crate::record_columns).
fn record(row: &Row<'_>) -> Result<CascadeRecord, StoreError> {
    let id = uuid(row.get_ref("id").map_err(failed)?)?;
    let version: i64 = row.get("version").map_err(failed)?;
    let wake_at: Option<i64> = row.get("wake_at").map_err(failed)?;
    let body = text(row, "body")?.ok_or_else(|| StoreError::Corrupt(format!("cascade {id}: no body")))?;
    let meta =
        text(row, "meta")?.ok_or_else(|| StoreError::Corrupt(format!("cascade {id}: no row in cascade_meta")))?;
    crate::codec::record(id, version, wake_at, body, meta)
}

/// A callback from the outbox's columns.
fn outbox(row: &Row<'_>) -> Result<OutboxItem, StoreError> {
    OutboxColumns {
        id: row.get("id").map_err(failed)?,
        cascade: uuid(row.get_ref("cascade_id").map_err(failed)?)?,
        url: row.get("url").map_err(failed)?,
        body: text(row, "body")?.unwrap_or_default(),
        tries: row.get("tries").map_err(failed)?,
        next_at: row.get("next_at").map_err(failed)?,
        last_error: row.get("last_error").map_err(failed)?,
        dead: row.get("dead").map_err(failed)?,
    }
    .item()
}

/// Read-only connections for the reads every cascade makes ([`QuickReads`]), used on the
/// calling thread: each read takes a connection from the free list (or opens one), runs its
/// indexed lookups and gives the connection back. In WAL mode a reader does not wait for the
/// writer; for the rare moments it would (another process holding the database exclusively,
/// recovering the WAL after a crash) it gives up after [`QUICK_BUSY`] with [`Busy`], and the
/// store reads through its pool instead, where waiting holds no caller's thread.
///
/// [`QuickReads`]: crate::shared::QuickReads
pub(crate) struct Reads {
    path: std::path::PathBuf,
    free: std::sync::Mutex<Vec<Connection>>,
    keep: usize,
}

/// How long a quick read waits for a lock before leaving the read to the pool.
const QUICK_BUSY: Duration = Duration::from_millis(5);

/// A quick read met a lock: read through the pool instead.
#[derive(Debug)]
pub(crate) struct Busy;

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Whether `e` is a lock met (the database busy or locked), not a failure.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

impl Reads {
    /// Reads of the database at `path`, keeping up to `keep` idle connections, and at least
    /// one per core (each thread reading at once has one).
    pub(crate) fn new(path: &Path, keep: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(4, std::num::NonZero::get);
        Self { path: path.to_owned(), free: std::sync::Mutex::new(Vec::new()), keep: keep.max(cores) }
    }

    fn with<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<Result<T, StoreError>, Busy> {
        let lock = || self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let taken = lock().pop();
        let conn = match taken {
            Some(conn) => conn,
            None => {
                let open = || -> rusqlite::Result<Connection> {
                    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                    let conn = Connection::open_with_flags(&self.path, flags)?;
                    conn.busy_timeout(QUICK_BUSY)?;
                    conn.set_prepared_statement_cache_capacity(8);
                    Ok(conn)
                };
                match open() {
                    Ok(conn) => conn,
                    Err(e) if is_busy(&e) => return Err(Busy),
                    Err(e) => return Ok(Err(StoreError::Unavailable(format!("{}: {e}", self.path.display())))),
                }
            }
        };
        let out = read(&conn);
        // A connection that failed otherwise than on a lock is not used again.
        if out.as_ref().is_ok() || out.as_ref().is_err_and(is_busy) {
            let mut free = lock();
            if free.len() < self.keep {
                free.push(conn);
            }
        }
        match out {
            Ok(value) => Ok(Ok(value)),
            Err(e) if is_busy(&e) => Err(Busy),
            Err(e) => Ok(Err(failed(e))),
        }
    }

    /// The attempt a provider message id belongs to.
    pub(crate) fn find_attempt(
        &self,
        adapter: &str,
        pmid: &str,
    ) -> Result<Result<Option<AttemptRef>, StoreError>, Busy> {
        let found = self.with(|conn| {
            conn.prepare_cached(
                "SELECT cascade_id, attempt FROM provider_refs WHERE adapter = ?1 AND provider_message_id = ?2",
            )?
            .query_row([adapter, pmid], |row| Ok((uuid(row.get_ref(0)?), row.get::<_, i64>(1)?)))
            .optional()
        })?;
        Ok(found.and_then(|found| match found {
            None => Ok(None),
            Some((cascade, attempt)) => Ok(Some(AttemptRef {
                cascade: CascadeId::from_uuid(cascade?),
                attempt: u32::try_from(attempt).map_err(|e| StoreError::Corrupt(format!("attempt {attempt}: {e}")))?,
            })),
        }))
    }

    /// The conversations with these (channel, address) pairs, each pair's in the order first
    /// asked (a pair asked twice is looked up once).
    pub(crate) fn conversations(
        &self,
        addresses: &[(ChannelName, String)],
    ) -> Result<Result<Vec<Conversation>, StoreError>, Busy> {
        if addresses.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        self.with(|conn| {
            let mut select = conn.prepare_cached(
                "SELECT connection, last_inbound_at, last_delivery_at FROM conversations \
                 WHERE channel = ?1 AND address = ?2",
            )?;
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for (channel, address) in addresses {
                if !seen.insert((channel, address)) {
                    continue;
                }
                let mut rows = select.query([channel.as_str(), address.as_str()])?;
                while let Some(row) = rows.next()? {
                    let connection: String = row.get(0)?;
                    out.push(crate::codec::conversation(
                        channel.as_str(),
                        address.clone(),
                        &connection,
                        row.get(1)?,
                        row.get(2)?,
                    ));
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use cascade_engine::store::CascadeUpdate;
    use chrono::{TimeDelta, Utc};

    use super::*;
    use crate::codec::ts;

    #[test]
    fn every_statement_has_its_own_slot_and_text() {
        for (i, sql) in Sql::ALL.iter().enumerate() {
            assert_eq!(*sql as usize, i, "Sql::ALL is in the order of the discriminants");
        }
        let texts: std::collections::HashSet<_> = Sql::ALL.iter().map(|s| s.text()).collect();
        assert_eq!(texts.len(), Sql::COUNT, "no two statements share a text");
        const { assert!(Sql::COUNT <= STATEMENTS, "the connection's cache keeps them all prepared") };
    }

    /// A migrated database in `dir`, and the writer's connection to it.
    async fn direct(dir: &tempfile::TempDir) -> Direct {
        let path = dir.path().join("direct.db");
        drop(crate::SqliteStore::open(&path).await.expect("open the store"));
        Direct::open(&path, Durability::Full).expect("open the direct connection")
    }

    fn create(phone: &str, wake_in: TimeDelta) -> (CascadeRecord, WriteOp) {
        let record = cascade_testkit::sample_record(None, "", phone, Utc::now() + wake_in);
        let op = WriteOp::Create(Box::new(NewCascade::encode(&record, &[]).expect("encode")));
        (record, op)
    }

    fn count(d: &Direct, table: &str) -> i64 {
        d.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).expect("count")
    }

    #[tokio::test]
    async fn quick_reads_answer_once_per_pair_and_leave_a_locked_database_to_the_pool() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut d = direct(&dir).await;
        let touch = |address: &str, connection: &str| {
            WriteOp::Touch(crate::codec::ConversationRow {
                channel: "sms".into(),
                address: address.into(),
                connection: connection.into(),
                last_inbound_at: Some(1),
                last_delivery_at: None,
            })
        };
        let (a, b) = (touch("+1555000001", "sms-1"), touch("+1555000002", "sms-1"));
        d.run(&[&a, &b]).expect("touch");
        let reads = Reads::new(&dir.path().join("direct.db"), 1);
        let pair = |address: &str| (ChannelName::new("sms"), address.to_owned());
        let asked = [pair("+1555000001"), pair("+1555000002"), pair("+1555000001"), pair("+1555000009")];
        let found = reads.conversations(&asked).expect("not busy").expect("read");
        let addresses: Vec<&str> = found.iter().map(|c| c.address.as_str()).collect();
        assert_eq!(addresses, ["+1555000001", "+1555000002"], "each pair once, in the order first asked");
        assert!(reads.conversations(&[]).expect("not busy").expect("read").is_empty());
        assert!(reads.find_attempt("sms", "nothing").expect("not busy").expect("read").is_none());

        // Another connection holding the database exclusively (once no other has it open): a
        // quick read gives up at once.
        drop(reads);
        let reads = Reads::new(&dir.path().join("direct.db"), 1);
        d.conn.pragma_update(None, "locking_mode", "EXCLUSIVE").expect("exclusive");
        d.run(&[&a]).expect("a write takes the exclusive lock and keeps it");
        let started = std::time::Instant::now();
        assert!(reads.find_attempt("sms", "nothing").is_err(), "busy");
        assert!(reads.conversations(&asked[..1]).is_err(), "busy");
        assert!(started.elapsed() < Duration::from_secs(2), "it did not wait out a long timeout");
    }

    #[tokio::test]
    async fn an_owners_cascades_are_found_through_the_partial_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = direct(&dir).await;
        let plan: Vec<String> = d
            .conn
            .prepare(concat!(
                "EXPLAIN QUERY PLAN SELECT ",
                crate::record_columns!("cascades"),
                " FROM cascades WHERE 1 = 1 AND owner = ?1 ORDER BY id DESC LIMIT ?2"
            ))
            .expect("explain the list statement")
            .query_map(params!["key:ops", 50], |row| row.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        let plan = plan.join("\n");
        assert!(plan.contains("INDEX cascades_owner (owner=?)"), "{plan}");
        let index: String = d
            .conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'cascades_owner'", [], |r| r.get(0))
            .expect("index");
        assert!(index.contains("WHERE owner IS NOT NULL"), "only cascades with an owner: {index}");
    }

    #[tokio::test]
    async fn a_failed_batch_leaves_nothing_and_the_connection_ready() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut d = direct(&dir).await;
        let (_, a) = create("+15550000001", TimeDelta::minutes(1));
        let (b_record, b) = create("+15550000002", TimeDelta::minutes(1));
        // `b`'s metadata row is there already: its insert fails, and with it the batch.
        d.conn
            .execute("INSERT INTO cascade_meta (id, meta) VALUES (?1, '{}')", [b_record.id().as_uuid().as_bytes()])
            .expect("plant a row");

        let failed = d.run(&[&a, &b]);
        assert!(matches!(failed, Err(StoreError::Unavailable(ref why)) if why.contains("UNIQUE")), "{failed:?}");
        assert!(d.conn.is_autocommit(), "no transaction left open");
        assert_eq!(count(&d, "cascades"), 0, "the batch's first write was rolled back with it");

        let out = d.run(&[&a]).expect("the next batch commits");
        assert!(matches!(out[..], [Ok(WriteOut::Created(Created::New))]), "{out:?}");
        assert_eq!(count(&d, "cascades"), 1);
        assert_eq!(count(&d, "cascade_meta"), 2);
    }

    #[tokio::test]
    async fn saves_run_before_claims_of_the_same_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut d = direct(&dir).await;
        let (record, op) = create("+15550000003", TimeDelta::minutes(-1));
        d.run(&[&op]).expect("create");

        // Queued after a claim that would take the (due) cascade, the save still finds the
        // version it read, as on the sqlx path.
        let now = Utc::now();
        let claim = WriteOp::Claim { now: ts(now), limit: 10, until: ts(now + TimeDelta::minutes(5)) };
        let update = CascadeUpdate {
            state: record.state.clone(),
            expected_version: record.version,
            wake_at: Some(now + TimeDelta::minutes(10)),
            events: Vec::new(),
            provider_refs: Vec::new(),
            outbox: None,
            recipient: None,
        };
        let save = WriteOp::Save(Box::new(SaveRow::encode(&update).expect("encode")));
        let out = d.run(&[&claim, &save]).expect("batch");
        assert!(matches!(out[1], Ok(WriteOut::Saved(2))), "{:?}", out[1]);
        // The save moved its wake-up past now: nothing was due for the claim.
        assert!(matches!(&out[0], Ok(WriteOut::Claimed(c)) if c.is_empty()), "{:?}", out[0]);

        // A save that read an old version is refused, and one of a cascade never stored too.
        let stale = d.run(&[&save]).expect("batch");
        assert!(matches!(stale[..], [Err(StoreError::Conflict(_))]), "{stale:?}");
        let (other, _) = create("+15550000004", TimeDelta::minutes(1));
        let missing = CascadeUpdate { state: other.state.clone(), ..update };
        let missing = WriteOp::Save(Box::new(SaveRow::encode(&missing).expect("encode")));
        let out = d.run(&[&missing]).expect("batch");
        assert!(matches!(out[..], [Err(StoreError::NotFound(_))]), "{out:?}");
    }
}
