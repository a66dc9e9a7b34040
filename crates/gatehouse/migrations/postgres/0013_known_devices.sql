-- Devices a user has signed in from, so a sign-in from a new one is mailed to them. A device is
-- a browser's random device cookie, or an API client's User-Agent; only an HMAC of it (keyed,
-- and naming the user) is kept. A bounded number per user: the least recently used is forgotten.
CREATE TABLE known_devices (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, device_hash)
);
CREATE INDEX known_devices_user_last_seen ON known_devices (user_id, last_seen_at);
