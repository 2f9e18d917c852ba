-- A provider webhook that came before our payment row was committed and outlived its retries
-- (an auto-paying provider can pay while our checkout call is still being retried). It waits
-- here and settles the payment the moment the payment is recorded, instead of going to the
-- DLQ with the applicant's money taken and the application stuck in awaiting_payment.
CREATE TABLE early_webhooks (
    provider_event_id text        PRIMARY KEY,
    application_id    text        NOT NULL,
    payload           jsonb       NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX early_webhooks_application ON early_webhooks (application_id);
