-- cascade schema, version 4 (SQLite). See docs/storage.md.
-- Campaigns: one message to a list of recipients, each recipient its own cascade. The store
-- keeps the campaign's state and settings, who drives it, and where each recipient is.

CREATE TABLE campaigns (
    id           BLOB PRIMARY KEY,
    name         TEXT NOT NULL,
    owner        TEXT,                      -- who created it (`key:NAME`), for list filters
    state        TEXT NOT NULL,             -- importing | running | paused | cancelled | finished
    spec         TEXT NOT NULL,             -- its settings, as cascade-campaigns writes them (JSON)
    recipients   INTEGER NOT NULL,          -- how many recipients it has
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,          -- last change of state or settings
    lease_holder TEXT,                      -- the instance driving it; NULL before the first lease
    lease_until  INTEGER                    -- when that lease lapses
);
CREATE INDEX campaigns_owner ON campaigns (owner, id);
-- Running campaigns, the only ones leased: the drivers' poll reads no other row.
CREATE INDEX campaigns_running ON campaigns (id) WHERE state = 'running';

CREATE TABLE campaign_recipients (
    campaign_id BLOB NOT NULL,
    seq         INTEGER NOT NULL,           -- number in list order, from 0
    line        INTEGER NOT NULL,           -- line in the uploaded list (header = 1)
    contact     TEXT NOT NULL,              -- the contact (JSON)
    zone        TEXT NOT NULL,              -- IANA time zone of its sending window
    state       TEXT NOT NULL,              -- pending | started | expired | cancelled | refused
    cascade_id  BLOB,                       -- its cascade, once started
    changed_at  INTEGER,                    -- when it was started, expired or cancelled
    outcome     TEXT,                       -- its cascade's outcome, once finished
    channel     TEXT,                       -- the channel that delivered, if one did
    cost        INTEGER,                    -- what its cascade cost, in millionths
    reason      TEXT,                       -- why it did not deliver
    PRIMARY KEY (campaign_id, seq)
) WITHOUT ROWID;
-- The recipients still to start, in list order: taking the next ones is a range of this index.
CREATE INDEX campaign_recipients_pending ON campaign_recipients (campaign_id, seq) WHERE state = 'pending';
