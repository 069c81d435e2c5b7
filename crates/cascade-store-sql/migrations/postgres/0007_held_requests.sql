-- cascade schema, version 7 (PostgreSQL). See docs/storage.md.
-- Requests answered before their work was done (Kommo's `widget_request`), held until it is:
-- a request whose lease ran out (its instance died) is claimed and worked again.

CREATE TABLE held_requests (
    key         TEXT PRIMARY KEY,           -- names the request (`kommo:<sha256 of return_url>`)
    kind        TEXT NOT NULL,              -- which worker takes it (`kommo.widget_request`)
    body        TEXT NOT NULL,              -- what the work needs (JSON the store does not read)
    held_at     BIGINT NOT NULL,            -- when it was first held
    lease_until BIGINT NOT NULL             -- whose it is until then; claimable after
);
CREATE INDEX held_requests_due ON held_requests (kind, lease_until);
