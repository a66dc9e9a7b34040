-- Passwords: an argon2id PHC string, or a legacy Werkzeug hash until its owner next signs in.
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN password_changed_at TIMESTAMPTZ;
