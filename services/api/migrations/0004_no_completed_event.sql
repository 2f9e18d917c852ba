-- A completed payment now means a complete application by itself (the mailer sends the
-- "application complete" mail on payment.completed): the projector no longer emits
-- application.completed, so it no longer guards "emitted once".
ALTER TABLE applications DROP COLUMN completed_event_emitted;
