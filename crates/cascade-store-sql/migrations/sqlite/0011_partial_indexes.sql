-- cascade schema, version 11 (SQLite). See docs/storage.md.
-- The owner index keeps only the cascades that have an owner: those an embedder starts
-- through the library may have none, and each of them cost an entry all the same. The list filter (`owner = ?`) uses the partial index as it
-- used the whole one.
DROP INDEX cascades_owner;
CREATE INDEX cascades_owner ON cascades (owner, id) WHERE owner IS NOT NULL;
