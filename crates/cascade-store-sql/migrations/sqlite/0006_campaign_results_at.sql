-- cascade schema, version 6 (SQLite). See docs/storage.md.
-- When each campaign recipient's result came: its cascade's finish, or when it was refused.
-- Progress over time and failures by reason are counted from it in the database. Results
-- stored before this version get the time where it is still known: a refused recipient's
-- `changed_at`, a started one's cascade's `finished_at` (unless retention purged it).

ALTER TABLE campaign_recipients ADD COLUMN result_at INTEGER;
UPDATE campaign_recipients SET result_at = changed_at WHERE state = 'refused';
UPDATE campaign_recipients
   SET result_at = (SELECT finished_at FROM cascades WHERE cascades.id = campaign_recipients.cascade_id)
 WHERE state = 'started' AND outcome IS NOT NULL;
