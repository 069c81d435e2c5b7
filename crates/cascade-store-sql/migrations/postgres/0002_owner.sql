-- cascade schema, version 2 (PostgreSQL). See docs/storage.md.
-- Who started each cascade (`key:NAME`, `kommo:ACCOUNT`), copied out of `meta` into a column
-- of its own, so listing one API key's cascades newest first is a range of an index.

ALTER TABLE cascades ADD COLUMN owner TEXT;
UPDATE cascades SET owner = meta::jsonb ->> 'owner';
CREATE INDEX cascades_owner ON cascades (owner, id);
