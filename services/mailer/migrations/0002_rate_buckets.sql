-- One token bucket per mailer lane, shared by every replica (see services/mailer/rate_limit.py).
CREATE TABLE rate_buckets (
    lane text PRIMARY KEY,
    tokens double precision NOT NULL CHECK (tokens >= 0),
    capacity double precision NOT NULL CHECK (capacity >= 1),
    refill_per_second double precision NOT NULL CHECK (refill_per_second > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
