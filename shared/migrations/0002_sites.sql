-- Published sites (issue #19). One row per project that was ever published;
-- `job` is the publish in progress, compared-and-set so two cannot interleave.
CREATE TABLE sites (
    project_id TEXT PRIMARY KEY,
    slug TEXT,
    version BIGINT,
    deploy_id TEXT,
    published_at BIGINT,
    job TEXT,
    pending_version BIGINT,
    pending_slug TEXT,
    pending_since BIGINT,
    last_error TEXT,
    updated_at BIGINT NOT NULL
);

-- Slugs are unique across all users: a row claims one for a project. A project
-- holds two while it is renamed (the old one serves until the new one does).
CREATE TABLE slugs (
    slug TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    claimed_at BIGINT NOT NULL
);
CREATE INDEX slugs_project ON slugs (project_id);
