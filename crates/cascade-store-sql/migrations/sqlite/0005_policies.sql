-- cascade schema, version 5 (SQLite). See docs/storage.md.
-- Named policies edited through the API: a policy stored here overrides the configuration's
-- policy of the same name. Every save bumps `version`; saves and deletes may name the version
-- they expect (compare-and-set).

CREATE TABLE policies (
    name       TEXT PRIMARY KEY,            -- what requests call it (`"policy": "default"`)
    policy     TEXT NOT NULL,               -- the policy, as the engine writes it (JSON)
    version    INTEGER NOT NULL,            -- 1 when first saved, one more with every save
    updated_at INTEGER NOT NULL             -- when it was last saved
) WITHOUT ROWID;
