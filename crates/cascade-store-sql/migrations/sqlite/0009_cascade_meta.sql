-- cascade schema, version 9 (SQLite). See docs/storage.md.
-- What never changes after a cascade is created (its metadata and its plan) moves out of its
-- `cascades` row into `cascade_meta`, written once. Every save rewrites the whole row, and the
-- plan (in `body`) and `meta` were about half of it: smaller rows, more of them to a page,
-- fewer pages written per commit. Existing plans are copied from `body` into the new `meta`;
-- a `body` keeps its own copy until the next save rewrites it without.

CREATE TABLE cascade_meta (
    id   BLOB PRIMARY KEY,
    meta TEXT NOT NULL                       -- contact, callback, metadata, plan (JSON)
) WITHOUT ROWID;
INSERT INTO cascade_meta (id, meta)
SELECT id, CASE WHEN json_type(body, '$.plan') = 'object'
                THEN json_set(meta, '$.plan', json(json_extract(body, '$.plan')))
                ELSE meta END
FROM cascades;
ALTER TABLE cascades DROP COLUMN meta;
