-- Failed logins per (client address, e-mail), for slowing down password guessing on
-- /auth/token (services/api/auth/throttle.py). In Postgres, so every API replica shares
-- one count. The key is a SHA-256 of the pair: no address or e-mail is kept in clear.
CREATE TABLE login_failures (
    key            text        PRIMARY KEY,
    failures       integer     NOT NULL,
    window_started timestamptz NOT NULL
);
CREATE INDEX login_failures_window_started ON login_failures (window_started);
