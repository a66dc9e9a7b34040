-- Items (seed 001): owned by their creator; `version` is the ETag, raised by every change.
CREATE TABLE items (
    id TEXT PRIMARY KEY NOT NULL,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX items_newest ON items (created_at DESC, id DESC);
CREATE INDEX items_owner_newest ON items (owner_id, created_at DESC, id DESC);
