-- Sync bookkeeping: per-table watermarks and last runs, and the change table that triggers
-- on mirrored tables feed (see `ferry sync install-triggers`).

CREATE TABLE sync_tables (
    table_name          text PRIMARY KEY,          -- schema.table
    watermark_at        timestamptz,               -- incremental: newest updated_at synced
    last_full_at        timestamptz,
    last_incremental_at timestamptz,
    last_rows           bigint
);

CREATE TABLE sync_changes (
    id         bigserial PRIMARY KEY,
    table_name text        NOT NULL,
    key        jsonb       NOT NULL,
    op         text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
