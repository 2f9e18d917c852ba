-- One payment per application: the application id is also the provider's idempotency key.
CREATE TABLE payments (
    application_id   text        PRIMARY KEY,
    applicant_email  text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('initiated', 'completed', 'failed')),
    amount_cents     integer     NOT NULL CHECK (amount_cents > 0),
    currency         text        NOT NULL,
    -- null only when the provider never gave us a checkout (status failed)
    payment_id       text        UNIQUE,
    checkout_url     text,
    failure_reason   text,
    -- the provider's webhook event that completed or failed it, for audits
    settled_by_event text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'failed' OR payment_id IS NOT NULL)
);
