-- cascade schema, version 8 (PostgreSQL). See docs/storage.md.
-- What never changes after a cascade is created (its metadata and its plan) moves out of its
-- `cascades` row into `cascade_meta`, written once. Every save writes a new version of the
-- whole row, and the plan (in `body`) and `meta` were about half of it. Existing plans are
-- copied from `body` into the new `meta`; a `body` keeps its own copy until the next save
-- rewrites it without. Stop every instance of an older version before starting this one: a
-- running older instance cannot write cascades once `meta` is gone.

-- No cascade is written between the copy and the column's removal (the lock the removal
-- needs, taken first: taking a weaker one first could deadlock with a running writer).
LOCK TABLE cascades IN ACCESS EXCLUSIVE MODE;

CREATE TABLE cascade_meta (
    id   UUID PRIMARY KEY,
    meta TEXT NOT NULL                       -- contact, callback, metadata, plan (JSON)
);
-- The plan is cut from `body` and spliced into `meta` as text, without PostgreSQL's JSON types:
-- `jsonb`, and the `json` operators, refuse the escaped NUL (\u0000) that JSON text may hold,
-- and `jsonb` reorders keys. A body is the state as serde writes it:
-- `{"id":…,"created_at":…,"plan":{…},"phase":…}`, the plan third and `phase` fourth, and
-- `,"phase":` cannot occur inside the plan (quotes within its strings are escaped, and no key
-- of a plan is named `phase`).
INSERT INTO cascade_meta (id, meta)
SELECT id, CASE WHEN p.at > 0 AND p.phase > p.at
                THEN '{"plan":' || substr(body, p.at + 7, p.phase - p.at - 7)
                     || CASE WHEN meta ~ '^\{\s*\}$' THEN '}' ELSE ',' || substr(meta, 2) END
                ELSE meta END
FROM cascades,
     LATERAL (SELECT strpos(body, '"plan":') AS at, strpos(body, ',"phase":') AS phase) AS p;
-- Every body the older version wrote has its plan where the splice looks for it; should one
-- not, stop here rather than lose that cascade's plan at its next save.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM cascade_meta WHERE meta NOT LIKE '{"plan":%') THEN
        RAISE EXCEPTION 'cascade_meta: a cascade''s plan could not be found in its body';
    END IF;
END $$;
ALTER TABLE cascades DROP COLUMN meta;
