-- The scheduler's record: per schedule how far fires have been handled and how many were
-- missed, and one row per enqueued fire. The primary key (schedule, fire_time) is the claim
-- that makes a fire enqueued once however many scheduler replicas run.

CREATE TABLE schedules (
    name          text PRIMARY KEY,
    paused        boolean     NOT NULL DEFAULT false,
    -- Every fire up to here has been enqueued or counted as missed.
    checked_until timestamptz NOT NULL,
    -- Fires that came due while no scheduler ran (later than scheduler.late_after).
    missed        bigint      NOT NULL DEFAULT 0,
    -- Of those, how many catch_up left out.
    skipped       bigint      NOT NULL DEFAULT 0
);

CREATE TABLE schedule_fires (
    schedule   text        NOT NULL,
    fire_time  timestamptz NOT NULL,
    job_id     uuid        NOT NULL,
    late       boolean     NOT NULL,               -- enqueued by catch-up after downtime
    claimed_by text        NOT NULL,               -- the scheduler replica
    claimed_at timestamptz NOT NULL,
    PRIMARY KEY (schedule, fire_time)
);
