-- Issue #15: an owner can make a project's preview public (a share link); in
-- multi-user mode every other preview needs the owner's signed preview token.
ALTER TABLE projects ADD COLUMN preview_public BOOLEAN NOT NULL DEFAULT FALSE;
