-- Every dead-letter replay an operator asked for, dry runs included: who, when, what.
CREATE TABLE replays (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requested_by text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    queue        text        NOT NULL,
    selector     jsonb       NOT NULL,   -- {"messageIds": [...]} | {"fingerprint": ...} | {"all": true}
    dry_run      boolean     NOT NULL,
    count        integer     NOT NULL,   -- moved (or, in a dry run, that would move)
    message_ids  text[]      NOT NULL
);
CREATE INDEX replays_requested_at ON replays (requested_at);
