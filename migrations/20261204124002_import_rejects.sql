-- import: documents that could not become rows, with the reason and the document itself, so
-- that imported + rejected = source count per collection. A re-run that imports a fixed
-- document deletes its reject.

CREATE TABLE import_rejects (
    collection text        NOT NULL,
    source_id  text        NOT NULL,   -- ObjectId hex, or the _id as relaxed extended JSON
    reason     text        NOT NULL,
    document   jsonb       NOT NULL,   -- relaxed extended JSON
    run_id     uuid,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, source_id)
);
