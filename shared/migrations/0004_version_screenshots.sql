-- Screenshots of a version's running app (JSON list of domain::Screenshot),
-- taken by the browser check after Verify.
ALTER TABLE versions ADD COLUMN screenshots TEXT NOT NULL DEFAULT '[]';
