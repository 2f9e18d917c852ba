-- An announcement's delivery is recorded in its message's transaction, beside the mail's record
-- (services/mailer/announcements.py): a mailer killed before the commit leaves no row, and the
-- redelivery mails the recipient under the same Message-ID. Rows are no longer written before
-- the SMTP call, so 'sending' goes: a 'sending' row left by the earlier version is a mailer
-- killed in its SMTP call whose message has not come back yet; removed, its redelivery sends it.
-- 'interrupted' rows stay: those recipients were counted as failed, and their messages are gone.
DELETE FROM announcement_deliveries WHERE outcome = 'sending';

ALTER TABLE announcement_deliveries
    DROP CONSTRAINT announcement_deliveries_outcome_check,
    ADD CONSTRAINT announcement_deliveries_outcome_check
        CHECK (outcome IN ('sent', 'refused', 'unsubscribed', 'cancelled', 'interrupted'));

COMMENT ON COLUMN announcement_deliveries.outcome IS
    'sent: committed with the mail''s record once SMTP took it; refused: a permanent refusal;'
    ' unsubscribed, cancelled: skipped, no mail; interrupted: left by an earlier version that'
    ' did not send again after a mailer was killed in its SMTP call (counted as failed)';
