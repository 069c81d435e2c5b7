-- cascade schema, version 1 (PostgreSQL). See docs/storage.md.
-- Timestamps are BIGINT nanoseconds since the Unix epoch (UTC); ids are UUIDs (v7, time-ordered).

CREATE TABLE cascades (
    id              UUID PRIMARY KEY,
    version         BIGINT NOT NULL,
    wake_at         BIGINT,                  -- next deadline or lease end; NULL once finished
    state           TEXT NOT NULL,           -- running | delivered | failed | cancelled | expired
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    idempotency_key TEXT UNIQUE,
    fingerprint     TEXT NOT NULL,
    channels        TEXT NOT NULL,           -- '|whatsapp|sms|', for list filters
    event_count     BIGINT NOT NULL,        -- timeline length: the next event's seq
    body            TEXT NOT NULL,           -- the state machine's state (JSON)
    meta            TEXT NOT NULL            -- contact, callback, metadata (JSON; never changes)
);
CREATE INDEX cascades_wake ON cascades (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX cascades_finished ON cascades (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE events (
    cascade_id UUID NOT NULL,
    seq        BIGINT NOT NULL,
    body       TEXT NOT NULL,                -- one timeline entry (JSON)
    PRIMARY KEY (cascade_id, seq)
);

CREATE TABLE provider_refs (
    adapter             TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    cascade_id          UUID NOT NULL,
    attempt             BIGINT NOT NULL,
    PRIMARY KEY (adapter, provider_message_id)
);
CREATE INDEX provider_refs_cascade ON provider_refs (cascade_id);

-- Addresses of running cascades only (rows go when the cascade finishes): replies find them.
CREATE TABLE addresses (
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    cascade_id UUID NOT NULL,
    PRIMARY KEY (channel, address, cascade_id)
);

CREATE TABLE conversations (
    channel          TEXT NOT NULL,
    address          TEXT NOT NULL,
    connection       TEXT NOT NULL,
    last_inbound_at  BIGINT,
    last_delivery_at BIGINT,
    PRIMARY KEY (channel, address, connection)
);

CREATE TABLE outbox (
    id         BIGSERIAL PRIMARY KEY,
    cascade_id UUID NOT NULL,
    url        TEXT NOT NULL,
    body       TEXT NOT NULL,
    tries      BIGINT NOT NULL DEFAULT 0,
    next_at    BIGINT NOT NULL,
    last_error TEXT,
    dead       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE NOT dead;
CREATE INDEX outbox_dead ON outbox (id) WHERE dead;
