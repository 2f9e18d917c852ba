-- What the mailer may read to build the payments reconciliation report (shared.db.migrate
-- grants it SELECT on this view alone): amounts and provider references, no checkout URLs.
CREATE VIEW payment_reconciliation AS
SELECT application_id, payment_id, status, amount_cents, currency, failure_reason,
       settled_by_event, created_at, updated_at
FROM payments;
