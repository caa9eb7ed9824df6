-- events (issue 19).
--
-- notify_deliveries: `delivery` is the template's choice when the message was committed
-- (`at_least_once` messages found in doubt are sent again, with the same Message-ID); `data`
-- keeps the template variables of an email so an operator can resend an unconfirmed one
-- (`ferry notify unconfirmed resend`); `realtime_missed` says why the realtime publish of an
-- in-app row failed (counted by /metrics), NULL when it was published or not asked for.
ALTER TABLE notify_deliveries
    ADD COLUMN delivery        text NOT NULL DEFAULT 'at_most_once'
        CHECK (delivery IN ('at_most_once', 'at_least_once')),
    ADD COLUMN data            jsonb,
    ADD COLUMN realtime_missed text;
CREATE INDEX notify_deliveries_unconfirmed ON notify_deliveries (updated_at)
    WHERE state = 'unconfirmed';
CREATE INDEX notify_deliveries_realtime_missed ON notify_deliveries (updated_at)
    WHERE realtime_missed IS NOT NULL;

-- [[on_change]] rules: AFTER row triggers on the rules' tables (`ferry events install-triggers`)
-- append each change with its row; the scheduler routes them to jobs and deletes them in the
-- transaction that follows the enqueue. `id` is the row version in the jobs' idempotency keys.
-- A change no rule could turn into a job keeps its `error` and stays for an operator.
CREATE TABLE change_events (
    id         bigserial PRIMARY KEY,
    table_name text        NOT NULL,               -- schema.table
    op         text        NOT NULL,               -- INSERT, UPDATE or DELETE
    key        jsonb       NOT NULL,               -- {primary key column: value}
    row        jsonb       NOT NULL,               -- the new row (the old one for DELETE)
    old        jsonb,                              -- the old row of an UPDATE
    at         timestamptz NOT NULL DEFAULT now(),
    error      text
);
CREATE INDEX change_events_waiting ON change_events (id) WHERE error IS NULL;
