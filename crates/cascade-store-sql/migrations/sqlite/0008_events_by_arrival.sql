-- cascade schema, version 8 (SQLite). See docs/storage.md.
-- Timeline entries in the order they arrive: a table ordered by (cascade_id, seq) put each new
-- entry beside its cascade's earlier ones, so a commit rewrote one page for about every cascade
-- it touched (40 % of the pages written under load). In a rowid table new entries go at its
-- end, a few pages per commit; an index keeps (cascade_id, seq) unique and a timeline's read
-- in order.

CREATE TABLE events_by_arrival (
    cascade_id BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    body       TEXT NOT NULL                 -- one timeline entry (JSON)
);
INSERT INTO events_by_arrival (cascade_id, seq, body) SELECT cascade_id, seq, body FROM events ORDER BY cascade_id, seq;
DROP TABLE events;
ALTER TABLE events_by_arrival RENAME TO events;
CREATE UNIQUE INDEX events_cascade ON events (cascade_id, seq);
