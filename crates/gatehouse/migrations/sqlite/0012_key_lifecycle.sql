-- Data keys: random keys (the one-time-code MAC key, the pending sign-in MAC key) sealed under
-- the secret key, so a secret-key change re-seals them and every code made under them still
-- verifies.
CREATE TABLE data_keys (
    name TEXT PRIMARY KEY NOT NULL,
    sealed TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- A rotated signing key is published at once and signs only from `signs_from` on, after every
-- cached copy of the key set has expired.
ALTER TABLE signing_keys ADD COLUMN signs_from TEXT NOT NULL DEFAULT '';
UPDATE signing_keys SET signs_from = created_at;
