//! Everything but opening a connection is the same on SQLite and PostgreSQL: the batch runner,
//! the writes that are not hot, the reads, and the `Store` impl. One macro defines them for
//! each sqlx database type; the few statements whose SQL differs (upserts, claims with
//! `FOR UPDATE SKIP LOCKED`) are its arguments. Statements that are the same on both build
//! their placeholders with a query builder.

/// Reads a store may answer on the calling thread, without a connection pool's hand-offs; `None`
/// means "through the pool".
pub(crate) trait QuickReads {
    /// [`Store::find_attempt`](cascade_engine::Store::find_attempt).
    fn find_attempt_now(
        &self,
        _adapter: &str,
        _provider_message_id: &str,
    ) -> Option<Result<Option<cascade_engine::store::AttemptRef>, cascade_engine::StoreError>> {
        None
    }

    /// [`Store::conversations`](cascade_engine::Store::conversations).
    fn conversations_now(
        &self,
        _addresses: &[(cascade_engine::ChannelName, String)],
    ) -> Option<Result<Vec<cascade_engine::store::Conversation>, cascade_engine::StoreError>> {
        None
    }
}

/// Defines, in the invoking module, the batch runner (`impl Backend for $backend`), `exec` for
/// the writes that are not hot, the row decoders and `impl Store for $store`. `$store` needs
/// fields `read` (a pool) and `writer`; `$backend` a field `write` (a pool).
macro_rules! define_sql_store {
    (
        db: $db:ty,
        row: $row:ty,
        store: $store:ty,
        backend: $backend:ty,
        // Upserts a conversation from (channel, address, connection, inbound, delivery),
        // each time keeping the later value.
        touch: $touch:expr,
        // Claims due cascades: (lease end, now, limit), returning record columns.
        claim: $claim:expr,
        // Claims due callbacks: (lease end, now, limit), returning outbox columns.
        claim_outbox: $claim_outbox:expr,
        // Records a failed delivery try: (id, error, retry at or NULL for dead).
        retry_outbox: $retry_outbox:expr,
        // Picks finished cascades to purge, none with a callback still to deliver: (before, limit).
        purge: $purge:literal,
        // Counts pending and dead callbacks, each over its partial index: (pending, dead).
        outbox_counts: $outbox_counts:literal,
        // Wraps the `channels` column test of list filters: (prefix, suffix).
        contains: ($contains:literal, $close:literal),
        // Takes or renews campaign leases: (holder, lease end, now, limit), returning campaign
        // columns.
        lease_campaigns: $lease_campaigns:literal,
        // Claims held requests whose lease ended: (lease end, kind, now, limit), returning
        // held request columns.
        claim_held: $claim_held:literal,
        // Run at the start of every batch's transaction, if any (planner settings for it).
        batch_settings: $batch_settings:expr,
    ) => {
        crate::hot::define_hot_writes!($db);

        #[async_trait::async_trait]
        impl crate::batch::Backend for $backend {
            async fn run(
                &self,
                ops: &[&crate::batch::WriteOp],
            ) -> Result<Vec<Result<crate::batch::WriteOut, cascade_engine::StoreError>>, cascade_engine::StoreError> {
                use cascade_engine::StoreError;
                use sqlx::Connection;
                let mut conn = self.write.acquire().await.map_err(crate::codec::unavailable)?;
                let run = async {
                    let mut tx = conn.begin().await?;
                    if let Some(settings) = $batch_settings {
                        sqlx::query(settings).execute(&mut *tx).await?;
                    }
                    let mut out: Vec<Option<Result<crate::batch::WriteOut, StoreError>>> =
                        ops.iter().map(|_| None).collect();
                    hot_writes(&mut tx, ops, &mut out).await?;
                    for (op, slot) in ops.iter().zip(out.iter_mut()) {
                        if slot.is_none() {
                            *slot = Some(exec(&mut tx, op).await?);
                        }
                    }
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(out)
                };
                match run.await {
                    Ok(out) => Ok(out
                        .into_iter()
                        .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("write not run".into()))))
                        .collect()),
                    Err(e) => {
                        // A failed transaction can leave the connection in a state its driver
                        // does not know about: SQLite rolls back by itself on a full disk, and
                        // a later `BEGIN` on that connection would become a savepoint of a
                        // transaction that never commits. The pool opens a fresh one instead.
                        conn.close_on_drop();
                        Err(crate::codec::unavailable(e))
                    }
                }
            }
        }

        /// Runs one write that is not hot (`hot_writes` takes creates and saves).
        async fn exec(
            tx: &mut sqlx::Transaction<'_, $db>,
            op: &crate::batch::WriteOp,
        ) -> Result<Result<crate::batch::WriteOut, cascade_engine::StoreError>, sqlx::Error> {
            use cascade_engine::StoreError;
            use cascade_engine::store::OutboxItem;
            use sqlx::QueryBuilder;
            use uuid::Uuid;

            use crate::batch::{WriteOp, WriteOut};

            Ok(match op {
                WriteOp::Create(_) | WriteOp::Save(_) => {
                    Err(StoreError::Unavailable("a hot write reached exec".into()))
                }
                WriteOp::Touch(c) => {
                    sqlx::query($touch)
                        .bind(&c.channel)
                        .bind(&c.address)
                        .bind(&c.connection)
                        .bind(c.last_inbound_at)
                        .bind(c.last_delivery_at)
                        .execute(&mut **tx)
                        .await?;
                    Ok(WriteOut::Done)
                }
                WriteOp::Claim { now, limit, until } => {
                    let rows = sqlx::query($claim).bind(until).bind(now).bind(limit).fetch_all(&mut **tx).await?;
                    crate::codec::claimed(rows.iter().map(record_row)).map(WriteOut::Claimed)
                }
                WriteOp::ClaimOutbox { now, limit, until } => {
                    let rows =
                        sqlx::query($claim_outbox).bind(until).bind(now).bind(limit).fetch_all(&mut **tx).await?;
                    let items: Result<Vec<OutboxItem>, StoreError> = rows.iter().map(outbox_row).collect();
                    items.map(|mut items| {
                        items.sort_by_key(|i| i.id);
                        WriteOut::Outbox(items)
                    })
                }
                WriteOp::OutboxResult { id, error: None } => {
                    let mut q = QueryBuilder::<$db>::new("DELETE FROM outbox WHERE id = ");
                    q.push_bind(id);
                    q.build().execute(&mut **tx).await?;
                    Ok(WriteOut::Done)
                }
                WriteOp::OutboxResult { id, error: Some((error, retry_at)) } => {
                    sqlx::query($retry_outbox).bind(id).bind(error).bind(retry_at).execute(&mut **tx).await?;
                    Ok(WriteOut::Done)
                }
                WriteOp::Purge { before, limit } => {
                    let ids: Vec<Uuid> =
                        sqlx::query_scalar($purge).bind(before).bind(limit).fetch_all(&mut **tx).await?;
                    // One statement per table for the lot, not one per cascade: a purge runs in
                    // the transaction every other write of its batch waits on. Not `addresses`:
                    // a cascade's addresses go in the write that finishes it, and that table has
                    // no index by cascade (each purge would read all of it).
                    for chunk in ids.chunks(crate::hot::IDS) {
                        for (table, column, dead_only) in [
                            ("events", "cascade_id", false),
                            ("provider_refs", "cascade_id", false),
                            // `$purge` picks no cascade with a callback still to deliver.
                            ("outbox", "cascade_id", true),
                            ("cascade_meta", "id", false),
                            ("cascades", "id", false),
                        ] {
                            let mut q = QueryBuilder::<$db>::new(format!("DELETE FROM {table} WHERE "));
                            if dead_only {
                                q.push("dead = ").push_bind(true).push(" AND ");
                            }
                            q.push(column).push(" IN (");
                            let mut list = q.separated(", ");
                            for id in chunk {
                                list.push_bind(*id);
                            }
                            list.push_unseparated(")");
                            // Of any size: not kept in the writer's statement cache.
                            q.build().persistent(false).execute(&mut **tx).await?;
                        }
                    }
                    Ok(WriteOut::Purged(ids.len()))
                }
                WriteOp::SaveCampaign(c) => {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO campaigns (id, name, owner, state, spec, recipients, created_at, updated_at) \
                         VALUES (",
                    );
                    q.separated(", ")
                        .push_bind(c.id)
                        .push_bind(c.name.as_str())
                        .push_bind(c.owner.as_deref())
                        .push_bind(c.state)
                        .push_bind(c.spec.as_str())
                        .push_bind(c.recipients)
                        .push_bind(c.created_at)
                        .push_bind(c.updated_at);
                    q.push(
                        ") ON CONFLICT (id) DO UPDATE SET name = excluded.name, spec = excluded.spec, \
                         recipients = excluded.recipients, updated_at = excluded.updated_at",
                    );
                    q.build().execute(&mut **tx).await?;
                    Ok(WriteOut::Done)
                }
                WriteOp::SetCampaignState { id, from, to, now } => {
                    let mut q = QueryBuilder::<$db>::new("UPDATE campaigns SET state = ");
                    q.push_bind(*to).push(", updated_at = ").push_bind(*now).push(" WHERE id = ").push_bind(*id);
                    q.push(" AND ").push(crate::one_of("state", from));
                    let moved = q.build().execute(&mut **tx).await?.rows_affected() > 0;
                    Ok(WriteOut::Moved(moved))
                }
                WriteOp::LeaseCampaigns { holder, now, until, limit } => {
                    let rows = sqlx::query($lease_campaigns)
                        .bind(holder.as_str())
                        .bind(until)
                        .bind(now)
                        .bind(limit)
                        .fetch_all(&mut **tx)
                        .await?;
                    let leased: Result<Vec<_>, StoreError> = rows.iter().map(campaign_row).collect();
                    leased.map(|mut c| {
                        c.sort_by_key(|c| c.id);
                        WriteOut::Campaigns(c)
                    })
                }
                WriteOp::AddRecipients { campaign, rows } => {
                    let mut q = QueryBuilder::<$db>::new("SELECT id FROM campaigns WHERE id = ");
                    q.push_bind(*campaign);
                    if q.build().fetch_optional(&mut **tx).await?.is_none() {
                        return Ok(Err(StoreError::Unavailable(format!("no campaign {campaign}"))));
                    }
                    for chunk in rows.chunks(crate::hot::RECIPIENTS) {
                        let mut q = QueryBuilder::<$db>::new(
                            "INSERT INTO campaign_recipients (campaign_id, seq, line, contact, zone, state) ",
                        );
                        q.push_values(chunk, |mut b, r| {
                            b.push_bind(*campaign)
                                .push_bind(r.seq)
                                .push_bind(r.line)
                                .push_bind(r.contact.as_str())
                                .push_bind(r.zone.as_str())
                                .push("'pending'");
                        });
                        // A number already stored keeps its row (and its progress).
                        q.push(" ON CONFLICT (campaign_id, seq) DO NOTHING");
                        // Rare and of any size: not kept in the writer's statement cache.
                        q.build().persistent(false).execute(&mut **tx).await?;
                    }
                    Ok(WriteOut::Done)
                }
                WriteOp::MarkStarted { campaign, started, refused, at } => {
                    for chunk in crate::hot::chunks(started) {
                        let mut q = QueryBuilder::<$db>::new("WITH v (seq, cascade_id) AS (");
                        q.push_values(chunk, |mut b, (seq, id)| {
                            b.push_bind(*seq).push_bind(*id);
                        });
                        q.push(") UPDATE campaign_recipients SET state = 'started', cascade_id = v.cascade_id, ");
                        q.push("changed_at = ").push_bind(*at);
                        q.push(" FROM v WHERE campaign_recipients.campaign_id = ").push_bind(*campaign);
                        q.push(" AND campaign_recipients.seq = v.seq AND campaign_recipients.state = 'pending'");
                        q.build().execute(&mut **tx).await?;
                    }
                    // Refused ones get their result at once: no cascade will bring one.
                    for chunk in crate::hot::chunks(refused) {
                        let mut q = QueryBuilder::<$db>::new("WITH v (seq, reason) AS (");
                        q.push_values(chunk, |mut b, (seq, reason)| {
                            b.push_bind(*seq).push_bind(reason.as_str());
                        });
                        q.push(
                            ") UPDATE campaign_recipients SET state = 'refused', outcome = 'refused', channel = NULL, \
                             cost = 0, reason = v.reason, result_at = ",
                        );
                        q.push_bind(*at).push(", changed_at = ").push_bind(*at);
                        q.push(" FROM v WHERE campaign_recipients.campaign_id = ").push_bind(*campaign);
                        q.push(" AND campaign_recipients.seq = v.seq AND campaign_recipients.state = 'pending'");
                        q.build().execute(&mut **tx).await?;
                    }
                    Ok(WriteOut::Done)
                }
                WriteOp::ClosePending { campaign, to, at } => {
                    let mut q = QueryBuilder::<$db>::new("UPDATE campaign_recipients SET state = ");
                    q.push_bind(*to).push(", changed_at = ").push_bind(*at);
                    q.push(" WHERE campaign_id = ").push_bind(*campaign).push(" AND state = 'pending'");
                    let n = q.build().execute(&mut **tx).await?.rows_affected();
                    Ok(WriteOut::Count(n))
                }
                WriteOp::SavePolicy(p) => {
                    // Each statement answers the new version, or nothing when the version
                    // expected is not the stored one.
                    let mut q = match p.expected {
                        Some(v) if v > 0 => {
                            let mut q = QueryBuilder::<$db>::new("UPDATE policies SET policy = ");
                            q.push_bind(p.policy.as_str()).push(", version = version + 1, updated_at = ");
                            q.push_bind(p.updated_at).push(" WHERE name = ").push_bind(p.name.as_str());
                            q.push(" AND version = ").push_bind(v);
                            q
                        }
                        expected => {
                            let mut q = QueryBuilder::<$db>::new(
                                "INSERT INTO policies (name, policy, version, updated_at) VALUES (",
                            );
                            q.separated(", ")
                                .push_bind(p.name.as_str())
                                .push_bind(p.policy.as_str())
                                .push("1")
                                .push_bind(p.updated_at);
                            q.push(match expected {
                                // Expecting none: a stored one stays as it is.
                                Some(_) => ") ON CONFLICT (name) DO NOTHING",
                                None => {
                                    ") ON CONFLICT (name) DO UPDATE SET policy = excluded.policy, \
                                     version = policies.version + 1, updated_at = excluded.updated_at"
                                }
                            });
                            q
                        }
                    };
                    q.push(" RETURNING version");
                    match q.build_query_scalar::<i64>().fetch_optional(&mut **tx).await? {
                        Some(version) => Ok(WriteOut::Saved(version as u64)),
                        None => Err(policy_conflict(tx, &p.name).await?),
                    }
                }
                WriteOp::DeletePolicy { name, expected } => {
                    let mut q = QueryBuilder::<$db>::new("DELETE FROM policies WHERE name = ");
                    q.push_bind(name.as_str());
                    if let Some(v) = expected {
                        q.push(" AND version = ").push_bind(*v);
                    }
                    let deleted = q.build().execute(&mut **tx).await?.rows_affected() > 0;
                    match expected {
                        Some(v) if !deleted => match policy_conflict(tx, name).await? {
                            // Expecting none, and there is none: nothing to delete.
                            StoreError::PolicyConflict { current: 0, .. } if *v == 0 => Ok(WriteOut::Moved(false)),
                            conflict => Err(conflict),
                        },
                        _ => Ok(WriteOut::Moved(deleted)),
                    }
                }
                WriteOp::Hold(h) => {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO held_requests (key, kind, body, held_at, lease_until) VALUES (",
                    );
                    q.separated(", ")
                        .push_bind(h.key.as_str())
                        .push_bind(h.kind.as_str())
                        .push_bind(h.body.as_str())
                        .push_bind(h.held_at)
                        .push_bind(h.lease_until);
                    // A key held already keeps its first request and lease.
                    q.push(") ON CONFLICT (key) DO NOTHING");
                    let new = q.build().execute(&mut **tx).await?.rows_affected() > 0;
                    Ok(WriteOut::Moved(new))
                }
                WriteOp::ClaimHeld { kind, now, limit, until } => {
                    let rows = sqlx::query($claim_held)
                        .bind(until)
                        .bind(kind.as_str())
                        .bind(now)
                        .bind(limit)
                        .fetch_all(&mut **tx)
                        .await?;
                    let held: Result<Vec<_>, StoreError> = rows.iter().map(held_row).collect();
                    held.map(|mut held| {
                        held.sort_by(|a, b| (a.held_at, &a.key).cmp(&(b.held_at, &b.key)));
                        WriteOut::Held(held)
                    })
                }
                WriteOp::Release { key } => {
                    let mut q = QueryBuilder::<$db>::new("DELETE FROM held_requests WHERE key = ");
                    q.push_bind(key.as_str());
                    q.build().execute(&mut **tx).await?;
                    Ok(WriteOut::Done)
                }
            })
        }

        /// The refusal of a policy write whose expected version is not the stored one: names
        /// the version there is (0: none).
        async fn policy_conflict(
            tx: &mut sqlx::Transaction<'_, $db>,
            name: &str,
        ) -> Result<cascade_engine::StoreError, sqlx::Error> {
            let mut q = sqlx::QueryBuilder::<$db>::new("SELECT version FROM policies WHERE name = ");
            q.push_bind(name);
            let current: Option<i64> = q.build_query_scalar().fetch_optional(&mut **tx).await?;
            Ok(cascade_engine::StoreError::PolicyConflict {
                name: name.to_owned(),
                current: current.map_or(0, |v| v as u64),
            })
        }

        fn policy_row(row: &$row) -> Result<cascade_engine::store::StoredPolicy, cascade_engine::StoreError> {
            use crate::codec::unavailable;
            use sqlx::Row;
            crate::codec::stored_policy(
                row.try_get("name").map_err(unavailable)?,
                row.try_get("policy").map_err(unavailable)?,
                row.try_get("version").map_err(unavailable)?,
                row.try_get("updated_at").map_err(unavailable)?,
            )
        }

        fn held_row(row: &$row) -> Result<cascade_engine::store::HeldRequest, cascade_engine::StoreError> {
            use crate::codec::unavailable;
            use sqlx::Row;
            crate::codec::held_request(
                row.try_get("key").map_err(unavailable)?,
                row.try_get("kind").map_err(unavailable)?,
                row.try_get("body").map_err(unavailable)?,
                row.try_get("held_at").map_err(unavailable)?,
            )
        }

        fn record_row(row: &$row) -> Result<cascade_engine::store::CascadeRecord, cascade_engine::StoreError> {
            use crate::codec::unavailable;
            use sqlx::Row;
            let id: uuid::Uuid = row.try_get("id").map_err(unavailable)?;
            let version: i64 = row.try_get("version").map_err(unavailable)?;
            let wake_at: Option<i64> = row.try_get("wake_at").map_err(unavailable)?;
            let body: &str = row.try_get("body").map_err(unavailable)?;
            // `NULL` when the cascade has no `cascade_meta` row.
            let meta: Option<&str> = row.try_get("meta").map_err(unavailable)?;
            let meta = meta.ok_or_else(|| {
                cascade_engine::StoreError::Corrupt(format!("cascade {id}: no row in cascade_meta"))
            })?;
            crate::codec::record(id, version, wake_at, body, meta)
        }

        fn outbox_row(row: &$row) -> Result<cascade_engine::store::OutboxItem, cascade_engine::StoreError> {
            use crate::codec::unavailable;
            use sqlx::Row;
            crate::codec::OutboxColumns {
                id: row.try_get("id").map_err(unavailable)?,
                cascade: row.try_get("cascade_id").map_err(unavailable)?,
                url: row.try_get("url").map_err(unavailable)?,
                body: row.try_get("body").map_err(unavailable)?,
                tries: row.try_get("tries").map_err(unavailable)?,
                next_at: row.try_get("next_at").map_err(unavailable)?,
                last_error: row.try_get("last_error").map_err(unavailable)?,
                dead: row.try_get("dead").map_err(unavailable)?,
            }
            .item()
        }

        fn campaign_row(row: &$row) -> Result<cascade_engine::store::CampaignRecord, cascade_engine::StoreError> {
            use crate::codec::unavailable;
            use sqlx::Row;
            crate::codec::CampaignColumns {
                id: row.try_get("id").map_err(unavailable)?,
                name: row.try_get("name").map_err(unavailable)?,
                owner: row.try_get("owner").map_err(unavailable)?,
                state: row.try_get("state").map_err(unavailable)?,
                spec: row.try_get("spec").map_err(unavailable)?,
                recipients: row.try_get("recipients").map_err(unavailable)?,
                created_at: row.try_get("created_at").map_err(unavailable)?,
                updated_at: row.try_get("updated_at").map_err(unavailable)?,
            }
            .record()
        }

        fn recipient_row(row: &$row) -> Result<cascade_engine::store::RecipientRecord, cascade_engine::StoreError> {
            use crate::codec::unavailable;
            use sqlx::Row;
            crate::codec::RecipientColumns {
                seq: row.try_get("seq").map_err(unavailable)?,
                line: row.try_get("line").map_err(unavailable)?,
                contact: row.try_get("contact").map_err(unavailable)?,
                zone: row.try_get("zone").map_err(unavailable)?,
                state: row.try_get("state").map_err(unavailable)?,
                cascade: row.try_get("cascade_id").map_err(unavailable)?,
                changed_at: row.try_get("changed_at").map_err(unavailable)?,
                outcome: row.try_get("outcome").map_err(unavailable)?,
                channel: row.try_get("channel").map_err(unavailable)?,
                cost: row.try_get("cost").map_err(unavailable)?,
                reason: row.try_get("reason").map_err(unavailable)?,
                result_at: row.try_get("result_at").map_err(unavailable)?,
            }
            .record()
        }

        #[async_trait::async_trait]
        impl cascade_engine::Store for $store {
            async fn create(
                &self,
                record: cascade_engine::store::CascadeRecord,
                events: Vec<cascade_engine::Event>,
            ) -> Result<cascade_engine::store::Created, cascade_engine::StoreError> {
                self.writer.create(&record, &events).await
            }

            async fn load(
                &self,
                id: cascade_engine::CascadeId,
            ) -> Result<Option<cascade_engine::store::CascadeRecord>, cascade_engine::StoreError> {
                let row = crate::shared::reading!(self.read, conn => {
                    let mut q =
                        sqlx::QueryBuilder::<$db>::new(
                            concat!("SELECT ", crate::record_columns!("cascades"), " FROM cascades WHERE id = "),
                        );
                    q.push_bind(*id.as_uuid());
                    q.build().fetch_optional(&mut *conn).await
                })?;
                row.as_ref().map(record_row).transpose()
            }

            async fn save(
                &self,
                update: &cascade_engine::store::CascadeUpdate,
            ) -> Result<u64, cascade_engine::StoreError> {
                self.writer.save(update).await
            }

            async fn events(
                &self,
                id: cascade_engine::CascadeId,
            ) -> Result<Vec<cascade_engine::Event>, cascade_engine::StoreError> {
                let rows: Vec<String> = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT body FROM events WHERE cascade_id = ");
                    q.push_bind(*id.as_uuid()).push(" ORDER BY seq");
                    q.build_query_scalar().fetch_all(&mut *conn).await
                })?;
                if rows.is_empty() && self.load(id).await?.is_none() {
                    return Err(cascade_engine::StoreError::NotFound(id));
                }
                let mut events = Vec::with_capacity(rows.len());
                for body in &rows {
                    events.extend(crate::codec::events(*id.as_uuid(), body)?);
                }
                Ok(events)
            }

            async fn find_attempt(
                &self,
                adapter: &str,
                provider_message_id: &str,
            ) -> Result<Option<cascade_engine::store::AttemptRef>, cascade_engine::StoreError> {
                use crate::codec::unavailable;
                use sqlx::Row;
                if let Some(found) = crate::shared::QuickReads::find_attempt_now(self, adapter, provider_message_id) {
                    return found;
                }
                let Some(row) = crate::shared::reading!(self.read, conn => {
                    let mut q =
                        sqlx::QueryBuilder::<$db>::new(
                            "SELECT cascade_id, attempt FROM provider_refs WHERE adapter = ",
                        );
                    q.push_bind(adapter).push(" AND provider_message_id = ").push_bind(provider_message_id);
                    q.build().fetch_optional(&mut *conn).await
                })? else {
                    return Ok(None);
                };
                let cascade: uuid::Uuid = row.try_get(0).map_err(unavailable)?;
                let attempt: i64 = row.try_get(1).map_err(unavailable)?;
                Ok(Some(cascade_engine::store::AttemptRef {
                    cascade: cascade_engine::CascadeId::from_uuid(cascade),
                    attempt: attempt as u32,
                }))
            }

            async fn claim_due(
                &self,
                now: cascade_engine::Timestamp,
                limit: usize,
                lease: std::time::Duration,
            ) -> Result<Vec<cascade_engine::store::CascadeRecord>, cascade_engine::StoreError> {
                self.writer.claim_due(now, limit, lease).await
            }

            async fn next_wake(&self) -> Result<Option<cascade_engine::Timestamp>, cascade_engine::StoreError> {
                let next: Option<i64> = crate::shared::reading!(self.read, conn => {
                    // Planned afresh each time (it runs once per scheduler round, not per
                    // cascade): a plan kept from when the table was small would go on reading
                    // every cascade as the table grows.
                    sqlx::query_scalar("SELECT min(wake_at) FROM cascades WHERE wake_at IS NOT NULL")
                        .persistent(false)
                        .fetch_one(&mut *conn)
                        .await
                })?;
                Ok(next.map(crate::codec::from_ts))
            }

            async fn running_for_address(
                &self,
                channel: &cascade_engine::ChannelName,
                address: &str,
            ) -> Result<Vec<cascade_engine::CascadeId>, cascade_engine::StoreError> {
                let ids: Vec<uuid::Uuid> = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT cascade_id FROM addresses WHERE channel = ");
                    q.push_bind(channel.as_str()).push(" AND address = ").push_bind(address);
                    q.build_query_scalar().fetch_all(&mut *conn).await
                })?;
                Ok(ids.into_iter().map(cascade_engine::CascadeId::from_uuid).collect())
            }

            async fn touch_conversation(
                &self,
                conversation: cascade_engine::store::Conversation,
            ) -> Result<(), cascade_engine::StoreError> {
                self.writer.touch(&conversation).await
            }

            async fn conversations(
                &self,
                addresses: &[(cascade_engine::ChannelName, String)],
            ) -> Result<Vec<cascade_engine::store::Conversation>, cascade_engine::StoreError> {
                use crate::codec::unavailable;
                use sqlx::Row;
                if let Some(found) = crate::shared::QuickReads::conversations_now(self, addresses) {
                    return found;
                }
                // Rows in the order of the pairs asked for, as if each pair were looked up in
                // turn; then the order every store returns.
                let first: std::collections::HashMap<(&str, &str), usize> = addresses
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, (channel, address))| ((channel.as_str(), address.as_str()), i))
                    .collect();
                let mut found = Vec::new();
                for chunk in addresses.chunks(crate::hot::CHUNK) {
                    for row in crate::shared::reading!(self.read, conn => {
                        let mut q = sqlx::QueryBuilder::<$db>::new(
                            "SELECT channel, address, connection, last_inbound_at, last_delivery_at FROM conversations \
                             WHERE (channel, address) IN (",
                        );
                        q.push_values(chunk, |mut b, (channel, address)| {
                            b.push_bind(channel.as_str()).push_bind(address.as_str());
                        });
                        q.push(")");
                        q.build().fetch_all(&mut *conn).await
                    })? {
                        let channel: &str = row.try_get(0).map_err(unavailable)?;
                        let address: String = row.try_get(1).map_err(unavailable)?;
                        let connection: &str = row.try_get(2).map_err(unavailable)?;
                        let at = first.get(&(channel, address.as_str())).copied().unwrap_or(usize::MAX);
                        found.push((
                            at,
                            crate::codec::conversation(
                                channel,
                                address,
                                connection,
                                row.try_get(3).map_err(unavailable)?,
                                row.try_get(4).map_err(unavailable)?,
                            ),
                        ));
                    }
                }
                found.sort_by_key(|(at, _)| *at);
                let out = found.into_iter().map(|(_, c)| c).collect();
                Ok(crate::sorted_conversations(out))
            }

            async fn list(
                &self,
                filter: &cascade_engine::store::ListFilter,
            ) -> Result<Vec<cascade_engine::store::CascadeRecord>, cascade_engine::StoreError> {
                let rows = crate::shared::reading!(self.read, conn => {
                    let mut q =
                        sqlx::QueryBuilder::<$db>::new(
                            concat!("SELECT ", crate::record_columns!("cascades"), " FROM cascades WHERE 1 = 1"),
                        );
                    crate::list_filter!(q, filter, $contains, $close);
                    q.build().fetch_all(&mut *conn).await
                })?;
                rows.iter().map(record_row).collect()
            }

            async fn claim_outbox(
                &self,
                now: cascade_engine::Timestamp,
                limit: usize,
                lease: std::time::Duration,
            ) -> Result<Vec<cascade_engine::store::OutboxItem>, cascade_engine::StoreError> {
                self.writer.claim_outbox(now, limit, lease).await
            }

            async fn outbox_result(
                &self,
                id: u64,
                result: Result<(), (String, Option<cascade_engine::Timestamp>)>,
            ) -> Result<(), cascade_engine::StoreError> {
                self.writer.outbox_result(id, result).await
            }

            async fn dead_letters(
                &self,
                before: Option<u64>,
                limit: usize,
            ) -> Result<Vec<cascade_engine::store::OutboxItem>, cascade_engine::StoreError> {
                let rows = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, cascade_id, url, body, tries, next_at, last_error, dead FROM outbox WHERE dead = ",
                    );
                    q.push_bind(true);
                    if let Some(before) = before {
                        q.push(" AND id < ").push_bind(i64::try_from(before).unwrap_or(i64::MAX));
                    }
                    q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
                    q.build().fetch_all(&mut *conn).await
                })?;
                rows.iter().map(outbox_row).collect()
            }

            async fn outbox_counts(&self) -> Result<cascade_engine::store::OutboxCounts, cascade_engine::StoreError> {
                let (pending, dead): (i64, i64) =
                    crate::shared::reading!(self.read, conn => {
                        sqlx::query_as($outbox_counts).fetch_one(&mut *conn).await
                    })?;
                Ok(cascade_engine::store::OutboxCounts { pending: pending as u64, dead: dead as u64 })
            }

            async fn purge_finished(
                &self,
                before: cascade_engine::Timestamp,
                limit: usize,
            ) -> Result<usize, cascade_engine::StoreError> {
                self.writer.purge(before, limit).await
            }

            async fn save_campaign(
                &self,
                campaign: &cascade_engine::store::CampaignRecord,
            ) -> Result<(), cascade_engine::StoreError> {
                self.writer.save_campaign(campaign).await
            }

            async fn load_campaign(
                &self,
                id: cascade_engine::CampaignId,
            ) -> Result<Option<cascade_engine::store::CampaignRecord>, cascade_engine::StoreError> {
                let row = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                        "SELECT ",
                        crate::campaign_columns!(),
                        " FROM campaigns WHERE id = "
                    ));
                    q.push_bind(*id.as_uuid());
                    q.build().fetch_optional(&mut *conn).await
                })?;
                row.as_ref().map(campaign_row).transpose()
            }

            async fn list_campaigns(
                &self,
                before: Option<cascade_engine::CampaignId>,
                owner: Option<&str>,
                limit: usize,
            ) -> Result<Vec<cascade_engine::store::CampaignRecord>, cascade_engine::StoreError> {
                let rows = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                        "SELECT ",
                        crate::campaign_columns!(),
                        " FROM campaigns WHERE 1 = 1"
                    ));
                    if let Some(b) = before {
                        q.push(" AND id < ").push_bind(*b.as_uuid());
                    }
                    if let Some(o) = owner {
                        q.push(" AND owner = ").push_bind(o);
                    }
                    q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
                    q.build().fetch_all(&mut *conn).await
                })?;
                rows.iter().map(campaign_row).collect()
            }

            async fn set_campaign_state(
                &self,
                id: cascade_engine::CampaignId,
                from: &[cascade_engine::store::CampaignState],
                to: cascade_engine::store::CampaignState,
                now: cascade_engine::Timestamp,
            ) -> Result<bool, cascade_engine::StoreError> {
                self.writer.set_campaign_state(id, from, to, now).await
            }

            async fn lease_campaigns(
                &self,
                holder: &str,
                now: cascade_engine::Timestamp,
                until: cascade_engine::Timestamp,
                limit: usize,
            ) -> Result<Vec<cascade_engine::store::CampaignRecord>, cascade_engine::StoreError> {
                self.writer.lease_campaigns(holder, now, until, limit).await
            }

            async fn add_recipients(
                &self,
                campaign: cascade_engine::CampaignId,
                recipients: &[cascade_engine::store::NewRecipient],
            ) -> Result<(), cascade_engine::StoreError> {
                self.writer.add_recipients(campaign, recipients).await
            }

            async fn campaign_recipients(
                &self,
                campaign: cascade_engine::CampaignId,
                filter: &cascade_engine::store::RecipientFilter,
            ) -> Result<Vec<cascade_engine::store::RecipientRecord>, cascade_engine::StoreError> {
                let rows = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT seq, line, contact, zone, state, cascade_id, changed_at, outcome, channel, cost, \
                         reason, result_at FROM campaign_recipients WHERE campaign_id = ",
                    );
                    q.push_bind(*campaign.as_uuid());
                    crate::recipient_filter!(q, filter);
                    q.build().fetch_all(&mut *conn).await
                })?;
                rows.iter().map(recipient_row).collect()
            }

            async fn mark_started(
                &self,
                campaign: cascade_engine::CampaignId,
                started: &[(u64, cascade_engine::store::StartResult)],
                at: cascade_engine::Timestamp,
            ) -> Result<(), cascade_engine::StoreError> {
                self.writer.mark_started(campaign, started, at).await
            }

            async fn close_pending(
                &self,
                campaign: cascade_engine::CampaignId,
                to: cascade_engine::store::RecipientState,
                at: cascade_engine::Timestamp,
            ) -> Result<u64, cascade_engine::StoreError> {
                self.writer.close_pending(campaign, to, at).await
            }

            async fn save_policy(
                &self,
                name: &str,
                policy: &cascade_engine::Policy,
                expected: Option<u64>,
                at: cascade_engine::Timestamp,
            ) -> Result<cascade_engine::store::StoredPolicy, cascade_engine::StoreError> {
                self.writer.save_policy(name, policy, expected, at).await
            }

            async fn load_policy(
                &self,
                name: &str,
            ) -> Result<Option<cascade_engine::store::StoredPolicy>, cascade_engine::StoreError> {
                let row = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT name, policy, version, updated_at FROM policies WHERE name = ",
                    );
                    q.push_bind(name);
                    q.build().fetch_optional(&mut *conn).await
                })?;
                row.as_ref().map(policy_row).transpose()
            }

            async fn list_policies(
                &self,
            ) -> Result<Vec<cascade_engine::store::StoredPolicy>, cascade_engine::StoreError> {
                let rows = crate::shared::reading!(self.read, conn => {
                    sqlx::query("SELECT name, policy, version, updated_at FROM policies").fetch_all(&mut *conn).await
                })?;
                let mut out = rows.iter().map(policy_row).collect::<Result<Vec<_>, _>>()?;
                // By name as bytes compare, whatever the database's collation.
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            }

            async fn delete_policy(
                &self,
                name: &str,
                expected: Option<u64>,
            ) -> Result<bool, cascade_engine::StoreError> {
                self.writer.delete_policy(name, expected).await
            }

            async fn hold_request(
                &self,
                request: &cascade_engine::store::NewHeldRequest,
                now: cascade_engine::Timestamp,
                lease: std::time::Duration,
            ) -> Result<bool, cascade_engine::StoreError> {
                self.writer.hold_request(request, now, lease).await
            }

            async fn claim_held_requests(
                &self,
                kind: &str,
                now: cascade_engine::Timestamp,
                limit: usize,
                lease: std::time::Duration,
            ) -> Result<Vec<cascade_engine::store::HeldRequest>, cascade_engine::StoreError> {
                self.writer.claim_held_requests(kind, now, limit, lease).await
            }

            async fn release_request(&self, key: &str) -> Result<(), cascade_engine::StoreError> {
                self.writer.release_request(key).await
            }

            async fn campaign_tally(
                &self,
                campaign: cascade_engine::CampaignId,
            ) -> Result<Vec<cascade_engine::store::Tally>, cascade_engine::StoreError> {
                use crate::codec::unavailable;
                use sqlx::Row;
                let rows = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT state, outcome, channel, count(*), CAST(coalesce(sum(cost), 0) AS BIGINT) \
                         FROM campaign_recipients WHERE campaign_id = ",
                    );
                    q.push_bind(*campaign.as_uuid()).push(" GROUP BY state, outcome, channel");
                    q.build().fetch_all(&mut *conn).await
                })?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push(crate::codec::tally(
                        row.try_get(0).map_err(unavailable)?,
                        row.try_get(1).map_err(unavailable)?,
                        row.try_get(2).map_err(unavailable)?,
                        row.try_get(3).map_err(unavailable)?,
                        row.try_get(4).map_err(unavailable)?,
                    )?);
                }
                Ok(crate::sorted_tally(out))
            }

            async fn campaign_series(
                &self,
                campaign: cascade_engine::CampaignId,
                bucket: std::time::Duration,
            ) -> Result<Vec<cascade_engine::store::SeriesPoint>, cascade_engine::StoreError> {
                use crate::codec::unavailable;
                use sqlx::Row;
                let size = i64::try_from(bucket.as_nanos()).unwrap_or(i64::MAX).max(1);
                let rows = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT (result_at / ");
                    q.push_bind(size).push(") * ").push_bind(size);
                    q.push(" AS bucket, outcome, channel, count(*) FROM campaign_recipients WHERE campaign_id = ");
                    q.push_bind(*campaign.as_uuid());
                    q.push(" AND result_at IS NOT NULL GROUP BY bucket, outcome, channel");
                    q.build().fetch_all(&mut *conn).await
                })?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let channel: Option<&str> = row.try_get(2).map_err(unavailable)?;
                    let count: i64 = row.try_get(3).map_err(unavailable)?;
                    out.push(cascade_engine::store::SeriesPoint {
                        at: crate::codec::from_ts(row.try_get(0).map_err(unavailable)?),
                        outcome: row.try_get(1).map_err(unavailable)?,
                        channel: channel.map(Into::into),
                        count: count as u64,
                    });
                }
                Ok(crate::sorted_series(out))
            }

            async fn campaign_reasons(
                &self,
                campaign: cascade_engine::CampaignId,
                limit: usize,
            ) -> Result<Vec<(String, u64)>, cascade_engine::StoreError> {
                use crate::codec::unavailable;
                use sqlx::Row;
                let rows = crate::shared::reading!(self.read, conn => {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT coalesce(reason, '') AS why, count(*) AS n FROM campaign_recipients \
                         WHERE campaign_id = ",
                    );
                    q.push_bind(*campaign.as_uuid());
                    q.push(" AND outcome IN ('failed', 'refused') GROUP BY why ORDER BY n DESC, why LIMIT ");
                    q.push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
                    q.build().fetch_all(&mut *conn).await
                })?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let n: i64 = row.try_get(1).map_err(unavailable)?;
                    out.push((row.try_get(0).map_err(unavailable)?, n as u64));
                }
                Ok(crate::sorted_reasons(out))
            }
        }
    };
}
pub(crate) use define_sql_store;

/// Runs a read on a connection from `$pool` named `$conn` (`$read` is an expression ending
/// in a query's `.await`; its error becomes a [`StoreError`](cascade_engine::StoreError)), and
/// runs it again on another connection while the one it got turns
/// out to be broken: up to once per connection the pool may hold, and once more. Readers are not checked
/// before use (a check is a round trip per read); after a database restart every pooled
/// connection is broken, and each one that fails is closed, so this is how a read gets to a
/// fresh connection instead of answering "unavailable". Reads change nothing, so running one
/// again is safe.
macro_rules! reading {
    ($pool:expr, $conn:ident => $read:expr) => {{
        // Every pooled connection may be broken, and each one that fails is closed.
        let mut left = $pool.options().get_max_connections().saturating_add(1);
        loop {
            left -= 1;
            let mut $conn = match $pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => break Err(e),
            };
            match $read {
                Err(e) if crate::codec::broken(&e) && left > 0 => {
                    tracing::debug!(error = %e, "a pooled reader had broken; reading again on another");
                    $conn.close_on_drop();
                }
                done => break done,
            }
        }
        .map_err(crate::codec::unavailable)
    }};
}
pub(crate) use reading;
