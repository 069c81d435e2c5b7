-- cascade schema, version 1 (SQLite). See docs/storage.md.
-- Timestamps are INTEGER nanoseconds since the Unix epoch (UTC); ids are 16-byte UUIDs (v7).

CREATE TABLE cascades (
    id              BLOB PRIMARY KEY,
    version         INTEGER NOT NULL,
    wake_at         INTEGER,                 -- next deadline or lease end; NULL once finished
    state           TEXT NOT NULL,           -- running | delivered | failed | cancelled | expired
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    idempotency_key TEXT UNIQUE,
    fingerprint     TEXT NOT NULL,
    channels        TEXT NOT NULL,           -- '|whatsapp|sms|', for list filters
    event_count     INTEGER NOT NULL,        -- timeline length: the next event's seq
    body            TEXT NOT NULL,           -- the state machine's state (JSON)
    meta            TEXT NOT NULL            -- contact, callback, metadata (JSON; never changes)
);
CREATE INDEX cascades_wake ON cascades (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX cascades_finished ON cascades (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE events (
    cascade_id BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    body       TEXT NOT NULL,                -- one timeline entry (JSON)
    PRIMARY KEY (cascade_id, seq)
) WITHOUT ROWID;

CREATE TABLE provider_refs (
    adapter             TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    cascade_id          BLOB NOT NULL,
    attempt             INTEGER NOT NULL,
    PRIMARY KEY (adapter, provider_message_id)
) WITHOUT ROWID;
CREATE INDEX provider_refs_cascade ON provider_refs (cascade_id);

-- Addresses of running cascades only (rows go when the cascade finishes): replies find them.
CREATE TABLE addresses (
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    cascade_id BLOB NOT NULL,
    PRIMARY KEY (channel, address, cascade_id)
) WITHOUT ROWID;

CREATE TABLE conversations (
    channel          TEXT NOT NULL,
    address          TEXT NOT NULL,
    connection       TEXT NOT NULL,
    last_inbound_at  INTEGER,
    last_delivery_at INTEGER,
    PRIMARY KEY (channel, address, connection)
) WITHOUT ROWID;

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    cascade_id BLOB NOT NULL,
    url        TEXT NOT NULL,
    body       TEXT NOT NULL,
    tries      INTEGER NOT NULL DEFAULT 0,
    next_at    INTEGER NOT NULL,
    last_error TEXT,
    dead       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE dead = 0;
CREATE INDEX outbox_dead ON outbox (id) WHERE dead = 1;
