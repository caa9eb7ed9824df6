-- files: the per-object ledger of bucket-to-bucket migrations, and the old values of every
-- URL a migration rewrote, so `ferry files rollback RUN` can put them back.

-- One row per object and (source, destination) pair, across runs: a rerun or a resumed run
-- skips an object whose source is unchanged and whose destination still holds what was copied.
CREATE TABLE files_objects (
    source       text        NOT NULL,  -- endpoint and s3://bucket/prefix, no secret
    destination  text        NOT NULL,
    key          text        NOT NULL,  -- relative to both prefixes
    size         bigint      NOT NULL,
    source_etag  text,
    dest_etag    text,                  -- as the destination reported it after the copy
    sha256       text,                  -- of the bytes copied
    state        text        NOT NULL CHECK (state IN ('uploading', 'copied', 'skipped')),
    upload_id    text,                  -- an open multipart upload, aborted by the next attempt
    run_id       uuid        NOT NULL,  -- the run that last copied or skipped it
    copied_by    uuid,                  -- the run that last wrote its bytes
    copied_at    timestamptz,           -- when bytes were last written; a skip leaves it
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, destination, key)
);
CREATE INDEX files_objects_run ON files_objects (run_id);

-- The value of a rewritten column before and after, keyed by the row's primary key as JSON.
CREATE TABLE files_rewrites (
    run_id       uuid        NOT NULL,
    target       text        NOT NULL,  -- schema.table.column
    row_key      jsonb       NOT NULL,
    old_value    text        NOT NULL,
    new_value    text        NOT NULL,
    rewritten_at timestamptz NOT NULL DEFAULT now(),
    rolled_back_at timestamptz,
    PRIMARY KEY (run_id, target, row_key)
);
