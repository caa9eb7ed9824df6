-- ferry's durable record. Tables are unqualified: the migrator runs with search_path set to
-- the configured schema (default `ferry`), so tests and several installs can share a database.

-- One row per long job: its lease (fenced by epoch), typed checkpoint and progress.
CREATE TABLE runs (
    id            uuid PRIMARY KEY,            -- the job id
    kind          text        NOT NULL,
    args          jsonb       NOT NULL,
    state         text        NOT NULL DEFAULT 'running'
                  CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    lease_epoch   bigint      NOT NULL DEFAULT 0,
    lease_owner   text,
    checkpoint    jsonb,
    resumed_from  jsonb,                       -- the checkpoint the latest lease started from
    done          bigint      NOT NULL DEFAULT 0,
    total         bigint,
    bytes_done    bigint      NOT NULL DEFAULT 0,
    bytes_total   bigint,
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX runs_state_heartbeat ON runs (state, heartbeat_at);
CREATE INDEX runs_started ON runs (started_at DESC);

-- Every job that failed for good, with each attempt's error, so it can be listed and
-- re-queued even when Redis has lost it.
CREATE TABLE dead_jobs (
    id              uuid PRIMARY KEY,
    queue           text        NOT NULL,
    kind            text        NOT NULL,
    args            jsonb       NOT NULL,
    attempts        integer     NOT NULL,
    max_attempts    integer     NOT NULL,
    errors          jsonb       NOT NULL,      -- [{attempt, at, error, worker}]
    last_error      text        NOT NULL,
    idempotency_key text,
    enqueued_at     timestamptz NOT NULL,
    died_at         timestamptz NOT NULL DEFAULT now(),
    retried_at      timestamptz,
    retried_as      uuid
);
CREATE INDEX dead_jobs_open ON dead_jobs (died_at DESC) WHERE retried_at IS NULL;
CREATE INDEX dead_jobs_kind ON dead_jobs (kind, died_at DESC);

-- Operator actions: who (token scope or OS user), what, when.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    target  text,
    details jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
