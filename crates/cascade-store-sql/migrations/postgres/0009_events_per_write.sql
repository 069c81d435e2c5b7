-- cascade schema, version 9 (PostgreSQL). See docs/storage.md.
-- An `events` row holds the timeline entries one write appended, numbered as the first of
-- them: one entry (a JSON object, as every row before this version), or several (a JSON array
-- of them, in order). No rows change; the version is recorded so that a server older than
-- it, which would read an array as a corrupt entry, refuses the database instead.
COMMENT ON COLUMN events.body IS 'the timeline entries one write appended (JSON): one entry, or an array of several';
