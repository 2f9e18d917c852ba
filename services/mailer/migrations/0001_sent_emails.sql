-- Every email the mailer handed to the SMTP server, one row per Message-ID.
CREATE TABLE sent_emails (
    id bigserial PRIMARY KEY,
    message_id_header text NOT NULL UNIQUE,
    template text NOT NULL,
    recipient text NOT NULL,
    lane text NOT NULL,
    application_id text,
    sent_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sent_emails_application_id ON sent_emails (application_id)
    WHERE application_id IS NOT NULL;
