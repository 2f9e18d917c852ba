-- The mailer's record of the reports it built (low lane) and the announcements it fanned out
-- (batch lane). The API shows their progress through the views at the end (shared.db.migrate
-- grants it SELECT on them alone).

CREATE TABLE report_runs (
    report_id    uuid        PRIMARY KEY,
    status       text        NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    rows_total   bigint,               -- counted before the file is written
    rows_written bigint,
    bytes        bigint,
    sha256       text        CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type text,
    filename     text,
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    expires_at   timestamptz          -- the download link's end; the blob is swept after it
);

CREATE VIEW report_status AS
SELECT report_id, status, rows_total, rows_written, bytes, sha256, content_type, filename, error,
       started_at, finished_at, expires_at
FROM report_runs;

-- One row per announcement the batch lane expanded: how many recipients it found.
CREATE TABLE announcement_runs (
    announcement_id uuid        PRIMARY KEY,
    total           integer     NOT NULL,
    expanded_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per (announcement, recipient), written before the mail is handed to SMTP and
-- committed on its own: a recipient is mailed at most once, whatever is killed when.
-- 'interrupted': a mailer died between this row and the end of its SMTP call, so the mail
-- may or may not have gone out; it is not sent again.
CREATE TABLE announcement_deliveries (
    announcement_id uuid        NOT NULL,
    recipient       text        NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('sending', 'sent', 'refused',
                                    'unsubscribed', 'cancelled', 'interrupted')),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (announcement_id, recipient)
);

CREATE VIEW announcement_progress AS
SELECT r.announcement_id, r.total, r.expanded_at,
       count(d.recipient) FILTER (WHERE d.outcome = 'sent') AS sent,
       count(d.recipient) FILTER (WHERE d.outcome IN ('refused', 'interrupted')) AS failed,
       count(d.recipient) FILTER (WHERE d.outcome IN ('unsubscribed', 'cancelled')) AS skipped,
       max(d.updated_at) AS last_update
FROM announcement_runs r
LEFT JOIN announcement_deliveries d ON d.announcement_id = r.announcement_id
GROUP BY r.announcement_id, r.total, r.expanded_at;
