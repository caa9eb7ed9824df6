-- The backup manifest: one row per finished backup object.
CREATE TABLE backups (
    id              uuid PRIMARY KEY,
    job_id          uuid NOT NULL,
    database        text NOT NULL,
    store           text NOT NULL,
    object_key      text NOT NULL,
    bytes           bigint NOT NULL,
    sha256          text NOT NULL,
    compression     text NOT NULL,
    encrypted_to    text,
    server_version  text NOT NULL,
    pg_dump_version text NOT NULL,
    started_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    duration_ms     bigint NOT NULL,
    row_counts      jsonb NOT NULL,
    verified_at     timestamptz,
    verify_error    text,
    deleted_at      timestamptz,
    UNIQUE (job_id, database)
);

CREATE INDEX backups_database_created ON backups (database, created_at DESC)
    WHERE deleted_at IS NULL;
