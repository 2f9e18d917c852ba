-- Request counts per (limit, subject) in fixed windows, for the 429s of
-- services/api/rate_limits.py (registrations and logins per client address, password resets
-- per address and per e-mail, one-time codes and submissions per user). In Postgres, so every
-- API replica shares one count. The key is a SHA-256: no address or e-mail is kept in clear.
CREATE TABLE rate_limits (
    key         text        PRIMARY KEY,
    hits        integer     NOT NULL,
    window_ends timestamptz NOT NULL
);
CREATE INDEX rate_limits_window_ends ON rate_limits (window_ends);
