-- cascade schema, version 10 (PostgreSQL). See docs/storage.md.
-- The owner and idempotency-key indexes keep only the cascades that have one. A cascade
-- started over the API without an idempotency key has none, one an embedder starts through
-- the library may have neither, and every write-back of a cascade (a new row version, as its deadline is
-- indexed) added an entry for it to each index all the same. `ON CONFLICT DO NOTHING` and
-- the lookups by key (`idempotency_key = $1`) and by owner (`owner = $1`) use the partial
-- indexes as they used the whole ones.
DROP INDEX cascades_owner;
CREATE INDEX cascades_owner ON cascades (owner, id) WHERE owner IS NOT NULL;
ALTER TABLE cascades DROP CONSTRAINT cascades_idempotency_key_key;
CREATE UNIQUE INDEX cascades_idempotency_key ON cascades (idempotency_key) WHERE idempotency_key IS NOT NULL;
