-- Alerts: one row per alert the scheduler raised, kept whether or not it could be sent, and
-- the delivery state of its webhook post. Dead jobs carry when they were announced, so each
-- is announced once (alone or in its kind's digest).

CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    raised_at       timestamptz NOT NULL DEFAULT now(),
    -- job.dead, backup.failed, backup.stale, run.stuck, relay.backlog, schedule.late
    topic           text        NOT NULL,
    subject         text        NOT NULL,          -- the kind, database, run or schedule
    count           integer     NOT NULL DEFAULT 1, -- events this alert stands for
    title           text        NOT NULL,
    message         text        NOT NULL,          -- what failed
    hint            text        NOT NULL,          -- where to look
    details         jsonb       NOT NULL DEFAULT '{}',
    -- pending: to be sent; sent; failed: gave up after retries; recorded: nowhere to send
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'failed', 'recorded')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz
);
CREATE INDEX alerts_pending ON alerts (next_attempt_at) WHERE state = 'pending';
CREATE INDEX alerts_topic ON alerts (topic, subject, raised_at DESC);
CREATE INDEX alerts_raised ON alerts (raised_at);

ALTER TABLE dead_jobs ADD COLUMN alerted_at timestamptz;
-- Jobs that died before alerts existed are not announced now.
UPDATE dead_jobs SET alerted_at = died_at;
CREATE INDEX dead_jobs_unalerted ON dead_jobs (kind, died_at) WHERE alerted_at IS NULL;

-- Retention deletes by age: these make its batches index scans.
CREATE INDEX dead_jobs_died ON dead_jobs (died_at);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX notify_deliveries_updated ON notify_deliveries (updated_at);
CREATE INDEX schedule_fires_time ON schedule_fires (fire_time);
CREATE INDEX files_objects_updated ON files_objects (updated_at);
CREATE INDEX files_rewrites_run ON files_rewrites (rewritten_at);
