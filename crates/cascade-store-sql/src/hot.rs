//! The hot writes of a batch (new cascades and write-backs) in a handful of multi-row
//! statements, whatever the batch's size.
//!
//! One statement per row would make every row a round trip to the database: at thousands of
//! cascades a second those round trips, not the database, become the cost. The SQL below is
//! the same on SQLite and PostgreSQL (placeholders come from the query builder), so one macro
//! defines it for both backends; SQLite's writer runs these writes on its own connection
//! instead (`direct`), so on SQLite it is the PostgreSQL path's twin, used by no batch.

/// Rows per multi-row statement (well inside both databases' limits on bound parameters).
pub(crate) const CHUNK: usize = 256;

/// `rows` in chunks whose sizes are powers of two, largest first, none over [`CHUNK`]: 110 rows
/// go as 64, 32, 8, 4 and 2.
///
/// A multi-row statement's SQL text depends on its number of rows, and each connection keeps
/// only the texts it has seen prepared. Exact counts made almost every batch's statements new
/// texts to parse and plan (a sixth of all the work of a durable cascade on SQLite); in these
/// sizes a statement has at most nine texts, each prepared once per connection.
pub(crate) fn chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = CHUNK.min(1 << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Prepared statements the writer connection keeps (sqlx's default is 100): the hot writes'
/// nine statements in their nine sizes each ([`chunks`]), with room for every other write.
pub(crate) const WRITER_STATEMENTS: usize = 256;

/// Campaign recipients per multi-row insert: five bound parameters a row, well inside SQLite's
/// limit of 32,766 and PostgreSQL's of 65,535, so a batch of a few thousand takes a handful of
/// statements.
pub(crate) const RECIPIENTS: usize = 2048;

/// Ids per `… IN (…)` list of a statement that takes one bound parameter per id (purges).
pub(crate) const IDS: usize = 4096;

/// Defines `async fn hot_writes(tx, ops, out)` for one sqlx database type. It runs every
/// `Create` and `Save` of `ops` and fills their slots of `out`; other writes are left alone.
macro_rules! define_hot_writes {
    ($db:ty) => {
        /// Runs the creates and saves of a batch in multi-row statements.
        async fn hot_writes(
            tx: &mut sqlx::Transaction<'_, $db>,
            ops: &[&crate::batch::WriteOp],
            out: &mut [Option<Result<crate::batch::WriteOut, cascade_engine::StoreError>>],
        ) -> Result<(), sqlx::Error> {
            use std::collections::{HashMap, HashSet};

            use cascade_engine::store::Created;
            use cascade_engine::{CascadeId, StoreError};
            use sqlx::{QueryBuilder, Row};
            use uuid::Uuid;

            use crate::batch::{WriteOp, WriteOut};
            use crate::codec::{NewCascade, OutboxRow, RecipientResultRow, SaveRow};
            use crate::hot::chunks;

            let creates: Vec<(usize, &NewCascade)> = ops
                .iter()
                .enumerate()
                .filter_map(|(i, op)| if let WriteOp::Create(c) = op { Some((i, &**c)) } else { None })
                .collect();
            let saves: Vec<(usize, &SaveRow)> = ops
                .iter()
                .enumerate()
                .filter_map(|(i, op)| if let WriteOp::Save(s) = op { Some((i, &**s)) } else { None })
                .collect();
            let mut metas: Vec<(Uuid, &str)> = Vec::new();
            let mut events: Vec<(Uuid, i64, &str)> = Vec::new();
            let mut add_addresses: Vec<(&str, &str, Uuid)> = Vec::new();
            let mut drop_addresses: Vec<(&str, &str, Uuid)> = Vec::new();
            let mut refs: HashMap<(&str, &str), (Uuid, i64)> = HashMap::new();
            let mut outbox: Vec<(Uuid, &OutboxRow)> = Vec::new();
            let mut results: Vec<&RecipientResultRow> = Vec::new();

            for chunk in chunks(&creates) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO cascades (id, version, wake_at, state, created_at, finished_at, idempotency_key, \
                     fingerprint, channels, owner, event_count, body) ",
                );
                q.push_values(chunk, |mut b, (_, c)| {
                    b.push_bind(c.id)
                        .push_bind(c.version)
                        .push_bind(c.wake_at)
                        .push_bind(c.state)
                        .push_bind(c.created_at)
                        .push_bind(c.finished_at)
                        .push_bind(c.idempotency_key.as_deref())
                        .push_bind(c.fingerprint.as_str())
                        .push_bind(c.channels.as_str())
                        .push_bind(c.owner.as_deref())
                        .push_bind(c.events.count)
                        .push_bind(c.body.as_str());
                });
                q.push(" ON CONFLICT DO NOTHING RETURNING id");
                let inserted: HashSet<Uuid> = q.build_query_scalar().fetch_all(&mut **tx).await?.into_iter().collect();
                for (i, c) in chunk {
                    if inserted.contains(&c.id) {
                        out[*i] = Some(Ok(WriteOut::Created(Created::New)));
                        metas.push((c.id, c.meta.as_str()));
                        events.extend(c.events.body.as_deref().map(|b| (c.id, 0, b)));
                        add_addresses.extend(c.addresses.iter().map(|(ch, a)| (ch.as_str(), a.as_str(), c.id)));
                        continue;
                    }
                    // The key is taken (by an earlier cascade or one earlier in this batch).
                    let Some(key) = &c.idempotency_key else {
                        out[*i] = Some(Err(StoreError::Corrupt(format!("cascade {} already exists", c.id))));
                        continue;
                    };
                    let mut q =
                        QueryBuilder::<$db>::new("SELECT id, fingerprint FROM cascades WHERE idempotency_key = ");
                    q.push_bind(key.as_str());
                    let row = q.build().fetch_one(&mut **tx).await?;
                    let id: Uuid = row.try_get(0)?;
                    let fingerprint: String = row.try_get(1)?;
                    out[*i] = Some(Ok(WriteOut::Created(Created::Existing {
                        id: CascadeId::from_uuid(id),
                        same_request: fingerprint == c.fingerprint,
                    })));
                }
            }

            for chunk in chunks(&metas) {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO cascade_meta (id, meta) ");
                q.push_values(chunk, |mut b, (id, meta)| {
                    b.push_bind(*id).push_bind(*meta);
                });
                q.build().execute(&mut **tx).await?;
            }

            for chunk in chunks(&saves) {
                let mut q =
                    QueryBuilder::<$db>::new("WITH v (id, expected, wake_at, state, finished_at, body, n) AS (");
                q.push_values(chunk, |mut b, (_, s)| {
                    b.push_bind(s.id)
                        .push_bind(s.expected_version)
                        .push_bind(s.wake_at)
                        .push_bind(s.state)
                        .push_bind(s.finished_at)
                        .push_bind(s.body.as_str())
                        .push_bind(s.events.count);
                });
                q.push(
                    ") UPDATE cascades SET version = cascades.version + 1, wake_at = v.wake_at, state = v.state, \
                     finished_at = v.finished_at, body = v.body, event_count = cascades.event_count + v.n \
                     FROM v WHERE cascades.id = v.id AND cascades.version = v.expected \
                     RETURNING cascades.id, cascades.version, cascades.event_count",
                );
                let rows = q.build().fetch_all(&mut **tx).await?;
                let mut saved: HashMap<Uuid, (i64, i64)> = HashMap::with_capacity(rows.len());
                for row in rows {
                    saved.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
                }
                for (i, s) in chunk {
                    // Taken out, not read: two saves of one cascade in a chunk naming the same
                    // version updated it once, and only the first of them is that update.
                    let Some((version, count)) = saved.remove(&s.id) else {
                        let mut q = QueryBuilder::<$db>::new("SELECT id FROM cascades WHERE id = ");
                        q.push_bind(s.id);
                        let exists = q.build().fetch_optional(&mut **tx).await?.is_some();
                        let id = CascadeId::from_uuid(s.id);
                        out[*i] = Some(Err(if exists { StoreError::Conflict(id) } else { StoreError::NotFound(id) }));
                        continue;
                    };
                    out[*i] = Some(Ok(WriteOut::Saved(version as u64)));
                    events.extend(s.events.body.as_deref().map(|b| (s.id, count - s.events.count, b)));
                    for r in &s.provider_refs {
                        refs.insert((r.adapter.as_str(), r.provider_message_id.as_str()), (s.id, i64::from(r.attempt)));
                    }
                    drop_addresses.extend(s.drop_addresses.iter().map(|(ch, a)| (ch.as_str(), a.as_str(), s.id)));
                    if let Some(o) = &s.outbox {
                        outbox.push((s.id, o));
                    }
                    if let Some(r) = &s.recipient {
                        results.push(r);
                    }
                }
            }

            for chunk in chunks(&events) {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO events (cascade_id, seq, body) ");
                q.push_values(chunk, |mut b, (id, seq, body)| {
                    b.push_bind(*id).push_bind(*seq).push_bind(*body);
                });
                q.build().execute(&mut **tx).await?;
            }
            let refs: Vec<_> = refs.into_iter().collect();
            for chunk in chunks(&refs) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO provider_refs (adapter, provider_message_id, cascade_id, attempt) ",
                );
                q.push_values(chunk, |mut b, ((adapter, pmid), (id, attempt))| {
                    b.push_bind(*adapter).push_bind(*pmid).push_bind(*id).push_bind(*attempt);
                });
                q.push(
                    " ON CONFLICT (adapter, provider_message_id) DO UPDATE SET cascade_id = excluded.cascade_id, \
                     attempt = excluded.attempt",
                );
                q.build().execute(&mut **tx).await?;
            }
            for chunk in chunks(&add_addresses) {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO addresses (channel, address, cascade_id) ");
                q.push_values(chunk, |mut b, (ch, a, id)| {
                    b.push_bind(*ch).push_bind(*a).push_bind(*id);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut **tx).await?;
            }
            for chunk in chunks(&drop_addresses) {
                let mut q = QueryBuilder::<$db>::new("DELETE FROM addresses WHERE (channel, address, cascade_id) IN (");
                q.push_values(chunk, |mut b, (ch, a, id)| {
                    b.push_bind(*ch).push_bind(*a).push_bind(*id);
                });
                q.push(")");
                q.build().execute(&mut **tx).await?;
            }
            for chunk in chunks(&outbox) {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO outbox (cascade_id, url, body, next_at) ");
                q.push_values(chunk, |mut b, (id, o)| {
                    b.push_bind(*id).push_bind(o.url.as_str()).push_bind(o.body.as_str()).push_bind(o.next_at);
                });
                q.build().execute(&mut **tx).await?;
            }
            // Results of campaign cascades that finished, onto their recipients: only a
            // cascade's last save carries one, so these are few next to the saves. One
            // statement per campaign and chunk, the campaign a constant: joined on the key
            // alone, SQLite scans the whole table once a chunk has a couple of hundred rows.
            results.sort_by_key(|r| (r.campaign, r.seq));
            for campaign in results.chunk_by(|a, b| a.campaign == b.campaign) {
                for chunk in chunks(&campaign) {
                    let mut q =
                        QueryBuilder::<$db>::new("WITH r (seq, outcome, channel, cost, reason, result_at) AS (");
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.seq)
                            .push_bind(r.outcome.as_str())
                            .push_bind(r.channel.as_deref())
                            .push_bind(r.cost)
                            .push_bind(r.reason.as_deref())
                            .push_bind(r.at);
                    });
                    q.push(
                        ") UPDATE campaign_recipients SET outcome = r.outcome, channel = r.channel, cost = r.cost, \
                         reason = r.reason, result_at = r.result_at FROM r WHERE campaign_recipients.campaign_id = ",
                    );
                    q.push_bind(chunk[0].campaign).push(" AND campaign_recipients.seq = r.seq");
                    q.build().execute(&mut **tx).await?;
                }
            }
            Ok(())
        }
    };
}
pub(crate) use define_hot_writes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_largest_first() {
        let sizes = |n: usize| chunks(&vec![0u8; n]).map(<[u8]>::len).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(110), [64, 32, 8, 4, 2]);
        assert_eq!(sizes(256), [256]);
        assert_eq!(sizes(700), [256, 256, 128, 32, 16, 8, 4]);
        for n in 0..1_000 {
            let s = sizes(n);
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s.iter().all(|k| k.is_power_of_two() && *k <= CHUNK));
            assert!(s.windows(2).all(|w| w[0] >= w[1]));
        }
    }
}
