-- cascade schema, version 8 (PostgreSQL). See docs/storage.md.
-- What never changes after a cascade is created (its metadata and its plan) moves out of its
-- `cascades` row into `cascade_meta`, written once. Every save writes a new version of the
-- whole row, and the plan (in `body`) and `meta` were about half of it. Existing plans are
-- copied from `body` into the new `meta`; a `body` keeps its own copy until the next save
-- rewrites it without.

CREATE TABLE cascade_meta (
    id   UUID PRIMARY KEY,
    meta TEXT NOT NULL                       -- contact, callback, metadata, plan (JSON)
);
INSERT INTO cascade_meta (id, meta)
SELECT id, CASE WHEN jsonb_typeof(body::jsonb -> 'plan') = 'object'
                THEN jsonb_set(meta::jsonb, '{plan}', body::jsonb -> 'plan')::text
                ELSE meta END
FROM cascades;
ALTER TABLE cascades DROP COLUMN meta;
