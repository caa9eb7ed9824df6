-- notify: one row per message, keyed by its idempotency key (a job's `--key`, else derived
-- from the job id; a broadcast's run id and recipient). The row exists before anything is
-- sent, so a retry finds it and never sends a message the server already accepted.

CREATE TABLE notify_deliveries (
    key        text PRIMARY KEY,
    job_id     uuid        NOT NULL,               -- the notify.send or notify.broadcast job
    template   text        NOT NULL,
    recipient  text,                               -- email address; NULL: in-app only
    user_id    text,
    state      text        NOT NULL DEFAULT 'queued'
               CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    reply      text,                               -- the SMTP server's last reply or error
    attempts   integer     NOT NULL DEFAULT 0,     -- sends started; > 1 after a retry
    in_app_at  timestamptz,                        -- when the in-app row was written
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX notify_deliveries_job ON notify_deliveries (job_id, state);
