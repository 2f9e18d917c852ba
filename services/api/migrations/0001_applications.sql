-- The api service's own tables. Unqualified names: the migrator and the service's login role
-- both resolve them to the role's schema through search_path.

-- Applicants and administrators. E-mail addresses are stored lower-cased by the application,
-- so a plain unique constraint is enough.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,              -- argon2 (pwdlib)
    role          text        NOT NULL DEFAULT 'applicant'
                              CHECK (role IN ('applicant', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per submission; the projector moves status and progress forward as events arrive.
CREATE TABLE applications (
    id                       uuid        PRIMARY KEY,
    applicant_id             uuid        NOT NULL REFERENCES users (id),
    program                  text        NOT NULL,
    personal_statement       text        NOT NULL,
    status                   text        NOT NULL DEFAULT 'submitted'
                                         CHECK (status IN ('submitted', 'verifying', 'verified',
                                                'processing_payment', 'awaiting_payment',
                                                'completed', 'verification_failed',
                                                'payment_failed')),
    progress                 smallint    NOT NULL DEFAULT 25 CHECK (progress BETWEEN 0 AND 100),
    docs_verified            boolean     NOT NULL DEFAULT false,
    payment_completed        boolean     NOT NULL DEFAULT false,
    checkout_url             text,
    payment_id               text,
    -- The request's correlation id: later hops that start here (the provider's webhook) carry
    -- it on, so one id follows an application from its submission to its completion.
    correlation_id           text        NOT NULL,
    completed_event_emitted  boolean     NOT NULL DEFAULT false,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX applications_applicant ON applications (applicant_id, created_at DESC);

-- Claim checks: the bytes live in the blob store under their SHA-256. The filename is only a
-- label shown back to people (sanitised), never a path.
CREATE TABLE application_documents (
    application_id uuid        NOT NULL REFERENCES applications (id),
    document_id    uuid        NOT NULL,
    position       smallint    NOT NULL,
    filename       text        NOT NULL,
    content_type   text        NOT NULL,             -- as declared by the client
    size           bigint      NOT NULL CHECK (size > 0),
    sha256         text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    PRIMARY KEY (application_id, document_id)
);
-- The blob sweeper asks "does any row still reference this hash?".
CREATE INDEX application_documents_sha256 ON application_documents (sha256);

-- What happened to an application, and which event (message id) made it happen.
CREATE TABLE application_history (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id uuid        NOT NULL REFERENCES applications (id),
    status         text        NOT NULL,
    progress       smallint    NOT NULL,
    event_type     text        NOT NULL,
    message_id     uuid,
    note           text,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX application_history_application ON application_history (application_id, id);

-- Idempotent submissions: the primary key makes a concurrent double submit wait for the first
-- one and then find its answer (INSERT ... ON CONFLICT), never a check-then-insert race.
CREATE TABLE idempotency_keys (
    applicant_id   uuid        NOT NULL REFERENCES users (id),
    key            text        NOT NULL,
    fingerprint    text        NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    application_id uuid        NOT NULL,
    response       jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (applicant_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Only the SHA-256 of a reset token is kept: a copy of this table cannot reset a password.
CREATE TABLE password_reset_tokens (
    token_hash text        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX password_reset_tokens_expires_at ON password_reset_tokens (expires_at);

-- One-time codes, kept as a keyed hash (HMAC): six digits are too few for a plain hash.
CREATE TABLE otp_codes (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    code_hash  text        NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX otp_codes_user ON otp_codes (user_id, created_at DESC);

-- Replay protection for the payment provider's webhooks: an event id is accepted once.
CREATE TABLE webhook_events (
    provider_event_id text        PRIMARY KEY,
    application_id    uuid        NOT NULL REFERENCES applications (id),
    payment_id        text        NOT NULL,
    status            text        NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now()
);
