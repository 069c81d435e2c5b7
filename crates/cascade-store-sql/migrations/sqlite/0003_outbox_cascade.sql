-- cascade schema, version 3 (SQLite). See docs/storage.md.
-- A cascade's callbacks, found by the cascade: retention keeps a finished cascade while a
-- callback of it is still to be delivered, and deletes its dead callbacks with it.

CREATE INDEX outbox_cascade ON outbox (cascade_id);
