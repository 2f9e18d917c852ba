-- One row per application the verifier decided on: the outcome and every file's verdict.
CREATE TABLE verifications (
    application_id text        PRIMARY KEY,
    outcome        text        NOT NULL CHECK (outcome IN ('verified', 'rejected')),
    documents      jsonb       NOT NULL,
    -- the application.submitted message this answers, to follow it in the logs
    message_id     uuid        NOT NULL,
    duration_ms    integer     NOT NULL,
    decided_at     timestamptz NOT NULL DEFAULT now()
);
