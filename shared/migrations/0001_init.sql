-- Apna schema v1. Times are epoch milliseconds; JSON is stored as text so the
-- same queries serve SQLite and PostgreSQL.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    prompt TEXT NOT NULL,
    template TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_active BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX projects_owner_active ON projects (owner, last_active);
CREATE INDEX projects_status_active ON projects (status, last_active);

CREATE TABLE run_locks (
    project_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    acquired_at BIGINT NOT NULL
);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    message TEXT NOT NULL,
    status TEXT NOT NULL,
    step BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    stop_reason TEXT,
    error TEXT,
    summary TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX runs_project ON runs (project_id, created_at);
CREATE INDEX runs_owner_status ON runs (owner, status);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    run_id TEXT,
    seq BIGINT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    tool_calls TEXT NOT NULL,
    file_diffs TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, seq)
);

CREATE TABLE run_events (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE step_results (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    output TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE versions (
    project_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    run_id TEXT,
    snapshot_key TEXT NOT NULL,
    summary TEXT NOT NULL,
    file_diffs TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, number)
);

CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    state_machine TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    checkpoint TEXT,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX executions_status ON executions (status);

CREATE TABLE history_events (
    execution_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    state_name TEXT,
    data TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
