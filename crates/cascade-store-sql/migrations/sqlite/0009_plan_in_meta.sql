-- cascade schema, version 9 (SQLite). See docs/storage.md.
-- A cascade's plan is kept in `meta`, written once, instead of in `body`, which every save
-- rewrites (the plan never changes and was about a third of each body). Existing rows get a
-- copy of their plan in `meta`; their `body` keeps its own until the next save rewrites it.

UPDATE cascades SET meta = json_set(meta, '$.plan', json(json_extract(body, '$.plan')))
WHERE json_type(body, '$.plan') = 'object';
