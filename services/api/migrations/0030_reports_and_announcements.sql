-- Reports and announcements asked for by administrators (services/api/admin/reports.py,
-- announcements.py). The request is the API's; the work and its progress are the mailer's
-- (its low and batch lanes), which the API reads through the mailer's views.

CREATE TABLE reports (
    id           uuid        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('applications', 'payments', 'dead_letters')),
    format       text        NOT NULL CHECK (format IN ('csv', 'xlsx')),
    filters      jsonb       NOT NULL,
    requested_by text        NOT NULL,  -- the administrator's e-mail, who gets the link
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE announcements (
    id           uuid        PRIMARY KEY,
    subject      text        NOT NULL,
    body         text        NOT NULL,
    audience     jsonb       NOT NULL,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    cancelled_by text
);

-- Applicants who followed the signed unsubscribe link of an announcement. Announcements only:
-- receipts, pay links and codes still go out.
CREATE TABLE announcement_opt_outs (
    email      text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What the mailer may read to build a report of applications (shared.db.migrate grants it
-- SELECT on this view alone): no personal statements, no documents.
CREATE VIEW report_applications AS
SELECT a.id AS application_id, u.email AS applicant_email, a.program, a.status, a.progress,
       a.created_at AS submitted_at, a.updated_at
FROM applications a
JOIN users u ON u.id = a.applicant_id;

-- Who an announcement may reach: applicants (with or without an application) who did not opt
-- out; one row per application, so an audience by program or status is a WHERE clause.
CREATE VIEW announcement_audience AS
SELECT u.email, a.program, a.status
FROM users u
LEFT JOIN applications a ON a.applicant_id = u.id
WHERE u.role = 'applicant'
  AND NOT EXISTS (SELECT 1 FROM announcement_opt_outs o WHERE o.email = u.email);

-- Read by the mailer before each mail of an announcement: cancelled, or opted out since?
CREATE VIEW announcement_state AS
SELECT id AS announcement_id, cancelled_at IS NOT NULL AS cancelled FROM announcements;

CREATE VIEW announcement_opt_out AS
SELECT email FROM announcement_opt_outs;
