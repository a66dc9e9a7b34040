-- TOTP multi-factor authentication. Secrets are sealed (XChaCha20-Poly1305 under a key derived
-- from the secret key); `totp_pending` holds a secret during enrolment until a code confirms it.
-- `totp_last_step` is the newest time step accepted, so no code is accepted twice.
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_pending TEXT;
ALTER TABLE users ADD COLUMN totp_enabled_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;

-- Recovery codes: HMAC-SHA256 under a key derived from the secret key, each usable once.
CREATE TABLE recovery_codes (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_mac TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_mac)
);
