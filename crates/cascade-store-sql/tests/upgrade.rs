//! Databases made before a migration: opening them applies it. Version 2 fills the new `owner`
//! column from the cascades' stored metadata, so the owner filter finds the cascades that were
//! there before; version 6 gives campaign results stored without a time the time still known;
//! version 8 (SQLite) moves timelines to a table in arrival order, keeping every entry; version 9
//! (SQLite) or 8 (PostgreSQL) moves `meta` into a table of its own with a copy of each cascade's
//! plan, so bodies saved without it still read whole; from version 10 (SQLite) or 9 (PostgreSQL)
//! a timeline row holds a write's entries, and timelines stored a row per entry still read
//! whole.

mod common;

use std::sync::Arc;

use cascade_engine::Store;
use cascade_engine::store::ListFilter;

/// A connection to a SQLite file.
async fn sqlite_conn(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::new().filename(path).connect().await.expect("connect")
}

/// A connection to PostgreSQL with `schema` first on its search path.
async fn pg_conn(schema: &str) -> sqlx::PgConnection {
    use sqlx::ConnectOptions;
    let options: sqlx::postgres::PgConnectOptions = common::pg_url().parse().expect("url");
    options.options([("search_path", schema)]).connect().await.expect("connect")
}

/// Runs `statements` on a closed SQLite file (to take it back to an older schema).
async fn run_on_sqlite(path: &std::path::Path, statements: &[impl AsRef<str>]) {
    use sqlx::Connection;
    let mut conn = sqlite_conn(path).await;
    for sql in statements {
        let sql = sql.as_ref();
        sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.expect("close");
}

/// Runs `statements` in a PostgreSQL test schema (to take it back to an older schema).
async fn run_on_postgres(schema: &str, statements: &[impl AsRef<str>]) {
    use sqlx::Connection;
    let mut conn = pg_conn(schema).await;
    for sql in statements {
        let sql = sql.as_ref();
        sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.expect("close");
}

/// A cascade's timeline rows, (`seq`, `body`), in order (`$1` is its id on either database).
const EVENT_ROWS: &str = "SELECT seq, body FROM events WHERE cascade_id = $1 ORDER BY seq";

/// Takes a SQLite database back to before version 9: `meta` a column of `cascades` again, the
/// plan in `body` only.
const SQLITE_BEFORE_CASCADE_META: [&str; 4] = [
    "ALTER TABLE cascades ADD COLUMN meta TEXT NOT NULL DEFAULT ''",
    "UPDATE cascades SET \
     body = json_set(body, '$.plan', json((SELECT json_extract(m.meta, '$.plan') FROM cascade_meta m \
       WHERE m.id = cascades.id))), \
     meta = (SELECT json_remove(m.meta, '$.plan') FROM cascade_meta m WHERE m.id = cascades.id)",
    "DROP TABLE cascade_meta",
    "DELETE FROM _sqlx_migrations WHERE version = 9",
];

/// Takes a PostgreSQL schema back to before version 8, as `SQLITE_BEFORE_CASCADE_META` does.
const POSTGRES_BEFORE_CASCADE_META: [&str; 4] = [
    "ALTER TABLE cascades ADD COLUMN meta TEXT NOT NULL DEFAULT ''",
    // As text, the way the older version wrote it (`meta` is `{"plan":…,"contact":…}`; the
    // plan goes back before the state's `phase`), not through `jsonb`, which would reformat it.
    "UPDATE cascades SET \
     body = substr(body, 1, strpos(body, ',\"phase\":') - 1) \
       || ',\"plan\":' || substr(m.meta, 9, strpos(m.meta, ',\"contact\":') - 9) \
       || substr(body, strpos(body, ',\"phase\":')), \
     meta = '{' || substr(m.meta, strpos(m.meta, ',\"contact\":') + 1) \
     FROM cascade_meta m WHERE m.id = cascades.id",
    "DROP TABLE cascade_meta",
    "DELETE FROM _sqlx_migrations WHERE version = 8",
];

/// Stores one cascade owned by `key:crm` and one by `kommo:acme`; returns the first's id.
async fn two_owners(store: &dyn Store) -> cascade_engine::CascadeId {
    let now = chrono::Utc::now();
    let mut crm = cascade_testkit::sample_record(None, "fp", "+15550000001", now);
    Arc::make_mut(&mut crm.meta).owner = Some("key:crm".into());
    let mut kommo = cascade_testkit::sample_record(None, "fp", "+15550000002", now);
    Arc::make_mut(&mut kommo.meta).owner = Some("kommo:acme".into());
    store.create(crm.clone(), vec![]).await.expect("create");
    store.create(kommo, vec![]).await.expect("create");
    crm.id()
}

async fn owned_by(store: &dyn Store, owner: &str) -> Vec<cascade_engine::CascadeId> {
    let filter = ListFilter { owner: Some(owner.into()), limit: 10, ..ListFilter::default() };
    store.list(&filter).await.expect("list").iter().map(|r| r.id()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fills_the_owner_column_of_existing_cascades() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("open");
    let id = two_owners(&store).await;
    drop(store);

    // Back to the schema of version 1, as an older server left it.
    let to_v1 = [
        "DROP INDEX cascades_owner",
        "ALTER TABLE cascades DROP COLUMN owner",
        "DELETE FROM _sqlx_migrations WHERE version = 2",
    ];
    run_on_sqlite(&path, &[&SQLITE_BEFORE_CASCADE_META[..], &to_v1].concat()).await;

    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("reopen and migrate");
    assert_eq!(owned_by(&store, "key:crm").await, [id]);
    assert_eq!(owned_by(&store, "kommo:acme").await.len(), 1);
    assert!(owned_by(&store, "key:other").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fills_the_owner_column_of_existing_cascades() {
    let schema = common::fresh_schema();
    let Some(store) = common::pg_store(&schema).await else { return };
    let id = two_owners(&store).await;
    drop(store);

    let to_v1 = ["ALTER TABLE cascades DROP COLUMN owner", "DELETE FROM _sqlx_migrations WHERE version = 2"];
    run_on_postgres(&schema, &[&POSTGRES_BEFORE_CASCADE_META[..], &to_v1].concat()).await;

    let store = common::pg_store(&schema).await.expect("reconnect and migrate");
    assert_eq!(owned_by(&store, "key:crm").await, [id]);
    assert_eq!(owned_by(&store, "kommo:acme").await.len(), 1);
    assert!(owned_by(&store, "key:other").await.is_empty());
    drop(store);
    common::drop_schema(&schema).await;
}

/// A campaign with one recipient whose cascade finished and one refused, their results stored
/// without a time (as before version 6); returns the campaign.
async fn results_without_times(store: &dyn Store) -> cascade_engine::CampaignId {
    use cascade_engine::machine::Phase;
    use cascade_engine::store::{
        CampaignMember, CampaignRecord, CampaignState, CascadeUpdate, NewRecipient, RecipientOutcome, RecipientResult,
        StartResult,
    };

    let t0 = chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("time");
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let campaign = CampaignRecord {
        id: cascade_engine::CampaignId::new(),
        name: "before times".into(),
        owner: None,
        state: CampaignState::Running,
        spec: serde_json::json!({}),
        recipients: 2,
        created_at: t0,
        updated_at: t0,
    };
    store.save_campaign(&campaign).await.expect("save campaign");
    let recipients: Vec<NewRecipient> = (0..2)
        .map(|seq| NewRecipient {
            seq,
            line: seq + 2,
            contact: cascade_engine::Contact::with_phone(format!("+1555000000{seq}")),
            zone: "UTC".into(),
        })
        .collect();
    store.add_recipients(campaign.id, &recipients).await.expect("add recipients");
    let mut record = cascade_testkit::sample_record(None, "fp", "+15550000000", t0);
    Arc::make_mut(&mut record.meta).campaign = Some(CampaignMember { campaign: campaign.id, seq: 0 });
    store.create(record.clone(), vec![]).await.expect("create");
    store.mark_started(campaign.id, &[(0, StartResult::Started(record.id()))], at(1)).await.expect("mark started");
    store
        .mark_started(campaign.id, &[(1, StartResult::Refused("no step can reach the contact".into()))], at(2))
        .await
        .expect("mark refused");
    let mut state = record.state.clone();
    state.phase = Phase::Finished;
    state.outcome = Some(cascade_engine::Outcome::Cancelled);
    state.finished_at = Some(at(30));
    let result = RecipientResult {
        outcome: "cancelled".into(),
        channel: None,
        cost: cascade_engine::Cost::ZERO,
        reason: Some("cancelled".into()),
        at: None,
    };
    let update = CascadeUpdate {
        state,
        expected_version: record.version,
        wake_at: None,
        events: Vec::new(),
        provider_refs: Vec::new(),
        outbox: None,
        recipient: Some(RecipientOutcome { campaign: campaign.id, seq: 0, result }),
    };
    store.save(&update).await.expect("finishing save");
    campaign.id
}

/// The times version 6 gives results stored before it: the cascade's finish, the refusal's.
async fn result_times(store: &dyn Store, campaign: cascade_engine::CampaignId) -> Vec<Option<i64>> {
    let filter = cascade_engine::store::RecipientFilter { limit: 10, ..Default::default() };
    let all = store.campaign_recipients(campaign, &filter).await.expect("recipients");
    all.iter().map(|r| r.result.as_ref().and_then(|x| x.at).map(|t| t.timestamp() - 1_767_225_600)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_gives_earlier_results_their_times() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("open");
    let campaign = results_without_times(&store).await;
    drop(store);

    run_on_sqlite(
        &path,
        &["ALTER TABLE campaign_recipients DROP COLUMN result_at", "DELETE FROM _sqlx_migrations WHERE version = 6"],
    )
    .await;

    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("reopen and migrate");
    assert_eq!(result_times(&store, campaign).await, [Some(30), Some(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gives_earlier_results_their_times() {
    let schema = common::fresh_schema();
    let Some(store) = common::pg_store(&schema).await else { return };
    let campaign = results_without_times(&store).await;
    drop(store);

    run_on_postgres(
        &schema,
        &["ALTER TABLE campaign_recipients DROP COLUMN result_at", "DELETE FROM _sqlx_migrations WHERE version = 6"],
    )
    .await;

    let store = common::pg_store(&schema).await.expect("reconnect and migrate");
    assert_eq!(result_times(&store, campaign).await, [Some(30), Some(2)]);
    drop(store);
    common::drop_schema(&schema).await;
}

fn event(at: i64, kind: cascade_engine::EventKind) -> cascade_engine::Event {
    cascade_engine::Event { at: chrono::DateTime::from_timestamp(1_767_225_600 + at, 0).expect("time"), kind }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_timeline_entry_when_moving_them_to_arrival_order() {
    use cascade_engine::EventKind;
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("open");
    let now = chrono::Utc::now();
    let a = cascade_testkit::sample_record(None, "", "+15550000001", now);
    let b = cascade_testkit::sample_record(None, "", "+15550000002", now);
    let cancel = |at, attempt: u32| event(at, EventKind::SendUnknown { attempt });
    let timeline_a = vec![event(0, EventKind::Created), cancel(1, 1), cancel(2, 2)];
    let timeline_b = vec![event(0, EventKind::Created), cancel(3, 1)];
    store.create(a.clone(), timeline_a.clone()).await.expect("create");
    store.create(b.clone(), timeline_b.clone()).await.expect("create");
    drop(store);

    // Back to version 7's table: ordered by (cascade_id, seq), without a rowid, a row per entry.
    let split = one_row_per_entry(10);
    run_on_sqlite(&path, &split).await;
    run_on_sqlite(
        &path,
        &[
            "CREATE TABLE events_v7 (cascade_id BLOB NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, \
         PRIMARY KEY (cascade_id, seq)) WITHOUT ROWID",
            "INSERT INTO events_v7 SELECT cascade_id, seq, body FROM events",
            "DROP TABLE events",
            "ALTER TABLE events_v7 RENAME TO events",
            "DELETE FROM _sqlx_migrations WHERE version = 8",
        ],
    )
    .await;

    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("reopen and migrate");
    assert_eq!(store.events(a.id()).await.expect("events"), timeline_a);
    assert_eq!(store.events(b.id()).await.expect("events"), timeline_b);
    // A new entry follows the old ones.
    let update = cascade_engine::store::CascadeUpdate {
        state: a.state.clone(),
        expected_version: a.version,
        wake_at: a.wake_at,
        events: vec![cancel(4, 3)],
        provider_refs: Vec::new(),
        outbox: None,
        recipient: None,
    };
    store.save(&update).await.expect("save");
    let mut longer = timeline_a.clone();
    longer.push(cancel(4, 3));
    assert_eq!(store.events(a.id()).await.expect("events"), longer);
    drop(store);

    let mut conn = sqlite_conn(&path).await;
    let table: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'events'")
        .fetch_one(&mut conn)
        .await
        .expect("events table");
    assert!(!table.contains("WITHOUT ROWID"), "{table}");
    let index: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'events_cascade'")
        .fetch_one(&mut conn)
        .await
        .expect("index");
    assert_eq!(index, 1);
    conn.close().await.expect("close");
}

/// Stores a cascade, lets `back` take the database to the schema before `cascade_meta` (its
/// plan back in `body`, none in `meta`), lets `reopen` open it again (migrating), then saves the
/// cascade (a body without its plan) and reads it back whole.
async fn plan_survives_the_move<S: Store>(
    store: S,
    back: impl AsyncFnOnce(&cascade_engine::store::CascadeRecord),
    reopen: impl AsyncFnOnce() -> S,
) {
    let mut record = cascade_testkit::sample_record(None, "fp", "+15550000001", chrono::Utc::now());
    // Text that JSON escapes, and that looks like the key the PostgreSQL migration cuts at.
    let text = "a NUL \u{0}, quotes \",\"phase\":{ and a backslash \\".to_owned();
    Arc::make_mut(&mut Arc::make_mut(&mut record.state.plan).steps[0].content).text = text;
    store.create(record.clone(), vec![]).await.expect("create");
    drop(store);
    back(&record).await;

    let store = reopen().await;
    assert_eq!(store.load(record.id()).await.expect("load"), Some(record.clone()));
    store.save(&cascade_testkit::update(&record, record.state.clone(), record.wake_at)).await.expect("save");
    let saved = store.load(record.id()).await.expect("load").expect("stored");
    assert_eq!(saved.state, record.state, "the plan is read from meta once the body has none");
    assert_eq!(saved.meta, record.meta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_plans_when_moving_them_to_meta() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("open");
    let back = async |_: &cascade_engine::store::CascadeRecord| run_on_sqlite(&path, &SQLITE_BEFORE_CASCADE_META).await;
    let reopen = async || cascade_store_sql::SqliteStore::open(&path).await.expect("reopen and migrate");
    plan_survives_the_move(store, back, reopen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_plans_when_moving_them_to_meta() {
    let schema = common::fresh_schema();
    let Some(store) = common::pg_store(&schema).await else { return };
    // The row exactly as the older version wrote it (the migration relies on serde's text: the
    // plan third among the state's keys, no spaces): its body the state's own JSON, plan
    // included, and `meta` the metadata alone.
    let back = async |record: &cascade_engine::store::CascadeRecord| {
        let literal = |json: String| json.replace('\'', "''");
        let body = literal(serde_json::to_string(&record.state).expect("state"));
        let meta = literal(serde_json::to_string(&*record.meta).expect("meta"));
        let restore = format!("UPDATE cascades SET body = '{body}', meta = '{meta}' WHERE id = '{}'", record.id());
        run_on_postgres(
            &schema,
            &[
                POSTGRES_BEFORE_CASCADE_META[0],
                &restore,
                POSTGRES_BEFORE_CASCADE_META[2],
                POSTGRES_BEFORE_CASCADE_META[3],
            ],
        )
        .await
    };
    let reopen = async || common::pg_store(&schema).await.expect("reconnect and migrate");
    plan_survives_the_move(store, back, reopen).await;
    common::drop_schema(&schema).await;
}

/// The statements that split every `events` row into one row per entry, as versions before
/// 10 (SQLite) or 9 (PostgreSQL) wrote them, and forget that version.
fn one_row_per_entry(version: i64) -> Vec<String> {
    vec![
        "CREATE TABLE events_split AS SELECT e.cascade_id, e.seq + j.key AS seq, j.value AS body \
         FROM events e, json_each(e.body) j WHERE json_type(e.body) = 'array' \
         UNION ALL SELECT cascade_id, seq, body FROM events WHERE json_type(body) = 'object'"
            .into(),
        "DELETE FROM events".into(),
        "INSERT INTO events (cascade_id, seq, body) SELECT cascade_id, seq, body FROM events_split".into(),
        "DROP TABLE events_split".into(),
        format!("DELETE FROM _sqlx_migrations WHERE version = {version}"),
    ]
}

/// A timeline stored one row per entry (before the version that stores one row per write) reads
/// whole after the upgrade; a write after it appends its entries as one row, after the old ones.
async fn timelines_survive_rows_per_write<S: Store>(
    store: S,
    back: impl AsyncFnOnce(),
    reopen: impl AsyncFnOnce() -> S,
    rows: impl AsyncFn(cascade_engine::CascadeId) -> Vec<(i64, String)>,
) {
    let now = chrono::Utc::now();
    let record = cascade_testkit::sample_record(None, "", "+15550000001", now);
    use cascade_engine::EventKind;
    let unknown = |at, attempt: u32| event(at, EventKind::SendUnknown { attempt });
    let timeline = vec![event(0, EventKind::Created), unknown(1, 1), unknown(2, 2)];
    store.create(record.clone(), timeline.clone()).await.expect("create");
    assert_eq!(rows(record.id()).await.len(), 1, "a write's entries are one row");
    drop(store);
    back().await;
    assert_eq!(rows(record.id()).await.len(), 3, "taken back to a row per entry");

    let store = reopen().await;
    assert_eq!(store.events(record.id()).await.expect("events"), timeline);
    let mut update = cascade_testkit::update(&record, record.state.clone(), record.wake_at);
    update.events = vec![unknown(3, 3), unknown(4, 4)];
    store.save(&update).await.expect("save");
    // One entry more: numbered after the two before it, as the count of entries says.
    let mut again = cascade_testkit::update(&record, record.state.clone(), record.wake_at);
    again.expected_version = record.version + 1;
    again.events = vec![unknown(5, 5)];
    store.save(&again).await.expect("save");
    let mut longer = timeline.clone();
    longer.extend(update.events.clone());
    longer.extend(again.events.clone());
    assert_eq!(store.events(record.id()).await.expect("events"), longer);
    let stored = rows(record.id()).await;
    assert_eq!(stored.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [0, 1, 2, 3, 5], "{stored:?}");
    assert!(stored[3].1.starts_with('['), "two entries of one write are an array: {stored:?}");
    assert!(stored[4].1.starts_with('{'), "one entry is itself: {stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_timelines_stored_a_row_per_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("open");
    let back = async || {
        run_on_sqlite(&path, &one_row_per_entry(10)).await;
    };
    let reopen = async || cascade_store_sql::SqliteStore::open(&path).await.expect("reopen and migrate");
    let rows = async |id: cascade_engine::CascadeId| {
        let mut conn = sqlite_conn(&path).await;
        sqlx::query_as(EVENT_ROWS).bind(*id.as_uuid()).fetch_all(&mut conn).await.expect("rows")
    };
    timelines_survive_rows_per_write(store, back, reopen, rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_timelines_stored_a_row_per_entry() {
    let schema = common::fresh_schema();
    let Some(store) = common::pg_store(&schema).await else { return };
    let back = async || {
        // PostgreSQL's JSON functions, over the text column.
        let statements: Vec<String> = one_row_per_entry(9)
            .into_iter()
            .map(|s| {
                s.replace("json_each(e.body) j", "json_array_elements_text(e.body::json) WITH ORDINALITY j(value, n)")
                    .replace("e.seq + j.key", "e.seq + j.n - 1")
                    .replace("json_type(e.body)", "json_typeof(e.body::json)")
                    .replace("json_type(body)", "json_typeof(body::json)")
            })
            .collect();
        run_on_postgres(&schema, &statements).await;
    };
    let reopen = async || common::pg_store(&schema).await.expect("reconnect and migrate");
    let rows = async |id: cascade_engine::CascadeId| {
        let mut conn = pg_conn(&schema).await;
        sqlx::query_as(EVENT_ROWS).bind(*id.as_uuid()).fetch_all(&mut conn).await.expect("rows")
    };
    timelines_survive_rows_per_write(store, back, reopen, rows).await;
    common::drop_schema(&schema).await;
}
