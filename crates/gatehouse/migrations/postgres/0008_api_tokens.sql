-- Token signing keys (Ed25519, PKCS#8 sealed under a key derived from the secret key).
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_sealed TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- One family per API sign-in: its refresh tokens rotate; reuse of a spent one revokes it.
CREATE TABLE token_families (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX token_families_user ON token_families (user_id);

-- Refresh tokens: SHA-256 of 256-bit random tokens, single use.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id UUID NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
