-- Each attempt of a diagnostic `sleep` job run with `"trace": true`, as the job itself wrote
-- it down: who ran it, the step it began at, the steps it slept, whether it completed. Tests
-- prove resumption and at-most-once completion from this account of the work done, not from
-- fields the record fills in by itself (`runs.resumed_from`).
CREATE TABLE diag_attempts (
    id         bigserial   PRIMARY KEY,
    job_id     uuid        NOT NULL,
    attempt    integer     NOT NULL,
    worker     text        NOT NULL,
    from_step  integer     NOT NULL,
    steps      integer     NOT NULL DEFAULT 0,
    completed  boolean     NOT NULL DEFAULT false,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX diag_attempts_job ON diag_attempts (job_id, id);
