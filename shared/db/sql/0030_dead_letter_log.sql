-- What the dead-letter summary report (the mailer's low lane, services/mailer/report_queries.py)
-- may read of this service's message log: which queue dead-lettered what kind of failure, and
-- when. Granted to the mailer alone (shared.db.migrate.READ_ONLY_VIEWS); no message ids.
CREATE VIEW dead_letter_log AS
SELECT queue, error_type, error, at
FROM message_log
WHERE outcome = 'dead-lettered';
