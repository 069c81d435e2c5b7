//! Schema migrations, embedded in the binary and applied at start-up with sqlx's migrator
//! (which records them in `_sqlx_migrations` and refuses a database whose applied scripts
//! were changed).

use std::future::Future;
use std::pin::Pin;

use cascade_engine::StoreError;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// An embedded set of migrations: (version, description, SQL).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Embedded(&'static [(i64, &'static str, &'static str)]);

/// The SQLite schema.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: Embedded = Embedded(&[
    (1, "initial", include_str!("../migrations/sqlite/0001_initial.sql")),
    (2, "owner", include_str!("../migrations/sqlite/0002_owner.sql")),
    (3, "outbox_cascade", include_str!("../migrations/sqlite/0003_outbox_cascade.sql")),
    (4, "campaigns", include_str!("../migrations/sqlite/0004_campaigns.sql")),
    (5, "policies", include_str!("../migrations/sqlite/0005_policies.sql")),
    (6, "campaign_results_at", include_str!("../migrations/sqlite/0006_campaign_results_at.sql")),
    (7, "held_requests", include_str!("../migrations/sqlite/0007_held_requests.sql")),
    (8, "events_by_arrival", include_str!("../migrations/sqlite/0008_events_by_arrival.sql")),
    (9, "cascade_meta", include_str!("../migrations/sqlite/0009_cascade_meta.sql")),
    (10, "events_per_write", include_str!("../migrations/sqlite/0010_events_per_write.sql")),
    (11, "partial_indexes", include_str!("../migrations/sqlite/0011_partial_indexes.sql")),
]);

/// The PostgreSQL schema.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Embedded = Embedded(&[
    (1, "initial", include_str!("../migrations/postgres/0001_initial.sql")),
    (2, "owner", include_str!("../migrations/postgres/0002_owner.sql")),
    (3, "outbox_cascade", include_str!("../migrations/postgres/0003_outbox_cascade.sql")),
    (4, "campaigns", include_str!("../migrations/postgres/0004_campaigns.sql")),
    (5, "policies", include_str!("../migrations/postgres/0005_policies.sql")),
    (6, "campaign_results_at", include_str!("../migrations/postgres/0006_campaign_results_at.sql")),
    (7, "held_requests", include_str!("../migrations/postgres/0007_held_requests.sql")),
    (8, "cascade_meta", include_str!("../migrations/postgres/0008_cascade_meta.sql")),
    (9, "events_per_write", include_str!("../migrations/postgres/0009_events_per_write.sql")),
    (10, "partial_indexes", include_str!("../migrations/postgres/0010_partial_indexes.sql")),
]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(*version, (*description).into(), MigrationType::Simple, (*sql).into(), false)
                })
                .collect())
        })
    }
}

/// A migrator over an embedded set.
pub(crate) async fn migrator(set: Embedded) -> Result<Migrator, StoreError> {
    Migrator::new(set).await.map_err(|e| StoreError::Unavailable(format!("loading migrations: {e}")))
}

/// A failed migration as a store error.
pub(crate) fn failed(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Unavailable(format!("migrating the schema: {e}"))
}
