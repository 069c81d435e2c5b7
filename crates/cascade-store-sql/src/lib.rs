//! # cascade-store-sql
//!
//! Durable [`Store`](cascade_engine::Store)s for cascade over sqlx:
//!
//! - [`SqliteStore`] (feature `sqlite`): the embedded default. One file in WAL mode; nothing to
//!   run beside the process. Its writer runs the writes every cascade makes on a connection its
//!   own thread owns (`rusqlite`, the same SQLite library), without a hand-off per statement.
//! - [`PgStore`] (feature `postgres`): several engine instances on one database share the work.
//!   Due cascades are claimed with `FOR UPDATE SKIP LOCKED` under a lease, so an instance that
//!   dies loses its claims when the lease runs out and another instance takes them over.
//!
//! Both embed their schema migrations and apply them when opened, and both write through a
//! group-commit writer: concurrent writes share transactions, so durable throughput is not
//! capped at one fsync per cascade. Both pass the same conformance suite as the in-memory
//! store (`cascade_testkit::store_conformance`). The schema is explained in `docs/storage.md`.
//!
//! ```no_run
//! # async fn demo(sms: impl cascade_engine::Channel) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cascade_engine::{Connection, Engine};
//!
//! let store = cascade_store_sql::SqliteStore::open("cascade.db").await?;
//! let engine = Engine::builder().store(Arc::new(store)).connection(Connection::new("sms-1", sms)).build()?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod batch;
mod codec;
#[cfg(feature = "sqlite")]
mod direct;
mod hot;
mod migrate;
#[cfg(feature = "postgres")]
mod postgres;
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use batch::{WRITER_THREAD, WriterStats};
#[cfg(feature = "postgres")]
pub use postgres::{PgConfig, PgStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteConfig, SqliteStore};

use cascade_engine::store::{Conversation, SeriesPoint, Tally};

/// Conversations in the order every store returns them.
fn sorted_conversations(mut out: Vec<Conversation>) -> Vec<Conversation> {
    out.sort_by(|a, b| (&a.channel, &a.connection).cmp(&(&b.channel, &b.connection)));
    out.dedup();
    out
}

/// Tallies in the order every store returns them: by state, outcome and channel.
fn sorted_tally(mut out: Vec<Tally>) -> Vec<Tally> {
    out.sort_by(|a, b| {
        let key = |t: &Tally| (t.state.as_str(), t.outcome.clone(), t.channel.clone());
        key(a).cmp(&key(b))
    });
    out
}

/// Series points in the order every store returns them: by time, outcome and channel (none
/// first, where PostgreSQL would sort it last).
fn sorted_series(mut out: Vec<SeriesPoint>) -> Vec<SeriesPoint> {
    out.sort_by(|a, b| (a.at, &a.outcome, &a.channel).cmp(&(b.at, &b.outcome, &b.channel)));
    out
}

/// Reasons in the order every store returns them: most first, then by reason as bytes (the
/// database's collation may order text otherwise).
fn sorted_reasons(mut out: Vec<(String, u64)>) -> Vec<(String, u64)> {
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// `column = 'a'` or `column IN ('a', 'b')` over names of a closed set (campaign and recipient
/// states), written into the SQL rather than bound: a partial index on `state = 'pending'` is
/// used only when the query names the state itself.
fn one_of(column: &str, names: &[&'static str]) -> String {
    match names {
        [one] => format!("{column} = '{one}'"),
        _ => {
            let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
            format!("{column} IN ({})", list.join(", "))
        }
    }
}

/// The columns a campaign is read from, in the order `campaign_row` names them.
macro_rules! campaign_columns {
    () => {
        "id, name, owner, state, spec, recipients, created_at, updated_at"
    };
}
pub(crate) use campaign_columns;

/// Appends a [`RecipientFilter`](cascade_engine::store::RecipientFilter)'s conditions, order
/// and limit to a query builder over `campaign_recipients`.
macro_rules! recipient_filter {
    ($q:expr, $f:expr) => {{
        let states: Vec<&'static str> = $f.states.iter().map(|s| s.as_str()).collect();
        if !states.is_empty() || !$f.outcomes.is_empty() {
            $q.push(" AND (");
            if !states.is_empty() {
                $q.push($crate::one_of("state", &states));
            }
            if !$f.outcomes.is_empty() {
                if !states.is_empty() {
                    $q.push(" OR ");
                }
                $q.push("outcome IN (");
                let mut list = $q.separated(", ");
                for o in &$f.outcomes {
                    list.push_bind(o.clone());
                }
                list.push_unseparated(")");
            }
            $q.push(")");
        }
        // Zones restrict pending recipients only.
        if let Some(zones) = &$f.zones {
            $q.push(" AND (state <> 'pending'");
            if !zones.is_empty() {
                $q.push(" OR zone IN (");
                let mut list = $q.separated(", ");
                for z in zones {
                    list.push_bind(z.clone());
                }
                list.push_unseparated(")");
            }
            $q.push(")");
        }
        if let Some(after) = $f.after {
            $q.push(" AND seq > ").push_bind($crate::codec::seq(after));
        }
        $q.push(" ORDER BY seq LIMIT ").push_bind(i64::try_from($f.limit).unwrap_or(i64::MAX));
    }};
}
pub(crate) use recipient_filter;

/// The columns a stored cascade is read with (`record_row` in `shared`), for the `cascades`
/// row named by `$table` (the table or its alias): its own columns, and its `meta` from
/// `cascade_meta` through a subquery rather than a join, so the rest of a statement names
/// `cascades`' columns unqualified, and SQLite allows it in `RETURNING`, where a joined
/// table's columns are not.
macro_rules! record_columns {
    ($table:literal) => {
        concat!(
            $table,
            ".id AS id, ",
            $table,
            ".version AS version, ",
            $table,
            ".wake_at AS wake_at, ",
            $table,
            ".body AS body, (SELECT meta FROM cascade_meta WHERE cascade_meta.id = ",
            $table,
            ".id) AS meta"
        )
    };
}
pub(crate) use record_columns;

/// Appends a [`ListFilter`](cascade_engine::store::ListFilter)'s conditions, order and limit to
/// a query builder. `$contains` and `$close` wrap the `channels` column test, whose function
/// differs between databases.
macro_rules! list_filter {
    ($q:expr, $f:expr, $contains:literal, $close:literal) => {{
        if let Some(s) = &$f.state {
            $q.push(" AND state = ").push_bind(s.clone());
        }
        if let Some(c) = &$f.channel {
            $q.push(concat!(" AND ", $contains)).push_bind(format!("|{c}|")).push($close);
        }
        if let Some(t) = $f.since {
            $q.push(" AND created_at >= ").push_bind($crate::codec::ts(t));
        }
        if let Some(b) = $f.before {
            $q.push(" AND id < ").push_bind(*b.as_uuid());
        }
        if let Some(o) = &$f.owner {
            $q.push(" AND owner = ").push_bind(o.clone());
        }
        $q.push(" ORDER BY id DESC LIMIT ").push_bind($f.limit as i64);
    }};
}
pub(crate) use list_filter;
