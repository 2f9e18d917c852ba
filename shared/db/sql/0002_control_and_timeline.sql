-- Operations tables every service's schema holds (see shared/control.py, shared/timeline.py).
-- The read-only role "ops" may SELECT them (and the outbox), nothing else of the service's.

-- Desired state of each queue this service consumes: a paused queue stays paused across
-- restarts, because a worker reads this table before it starts consuming.
CREATE TABLE queue_controls (
    queue      text        PRIMARY KEY,
    paused     boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);

-- One row per delivery (the consumer runtime's observation), for the per-message timeline.
-- message_id is text, not uuid: an undecodable message may carry any id, or none ('').
CREATE TABLE message_log (
    id         bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id text             NOT NULL,
    queue      text             NOT NULL,
    attempt    integer          NOT NULL,
    outcome    text             NOT NULL,
    seconds    double precision NOT NULL,
    error_type text,
    error      text,
    at         timestamptz      NOT NULL
);
CREATE INDEX message_log_message_id ON message_log (message_id);
CREATE INDEX message_log_at ON message_log (at);
