-- When the owner of an expiring API key was reminded to renew it (ASVS V2.3.3): set once, by
-- the instance that sends the reminder, so each key is reminded at most once.
ALTER TABLE api_keys ADD COLUMN reminded_at TIMESTAMPTZ;
