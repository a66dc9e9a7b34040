-- Items (seed 001): owned by their creator; `version` is the ETag, raised by every change.
CREATE TABLE items (
    id UUID PRIMARY KEY,
    owner_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX items_newest ON items (created_at DESC, id DESC);
CREATE INDEX items_owner_newest ON items (owner_id, created_at DESC, id DESC);
