-- What the API may read of the mail sent about an application, to show it in the status
-- history: which mail and when, never the address. The API's role is granted SELECT on this
-- view alone (shared.db.migrate), so no event per sent mail has to cross the broker.
CREATE VIEW application_mail AS
SELECT application_id, template, sent_at, id AS sequence  -- the order the mails went out
FROM sent_emails
WHERE application_id IS NOT NULL;
