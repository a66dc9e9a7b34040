-- Failed sign-in attempts per submitted address (hashed) and per client IP: growing delays, then a
-- temporary lock. In the database so every instance sees the same counts.
CREATE TABLE sign_in_failures (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure_at TIMESTAMPTZ NOT NULL,
    blocked_until TIMESTAMPTZ NOT NULL
);
