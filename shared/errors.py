"""One error tree for the messaging core.

    MessagingError
    ├── PermanentError            -> dead-lettered on the first attempt, never retried
    │   ├── UndecodableMessage    (not JSON, wrong content type, envelope invalid, no message id)
    │   ├── UnknownEventType      (the catalog has no such type)
    │   ├── InvalidPayload        (the payload does not match the type's schema)
    │   ├── ForgedEvent           (not signed by the service that owns the event type)
    │   └── DomainRuleViolation   (a handler says the request can never succeed)
    ├── TransientError            -> retried after a delay, dead-lettered when attempts run out
    ├── PublishFailed             (the broker did not confirm a publish)
    │   ├── Unroutable            (a mandatory publish matched no queue)
    │   └── PublishRefused        (the login may not publish that; also an AccessRefused)
    ├── AccessRefused             (the login may not do that: permissions)
    ├── MissingQueue              (the broker has no queue of that name)
    └── TopologyMismatch          (a queue or exchange exists with other arguments)

Handlers raise ``PermanentError`` subclasses for input that can never be processed; any other
exception counts as transient. The decision "retry / dead-letter / ack" is made only in
``shared.consumer.runtime``.
"""


class MessagingError(Exception):
    """Base of every error the messaging core raises on purpose."""


class PermanentError(MessagingError):
    """Processing this message can never succeed: dead-letter it at once."""


class UndecodableMessage(PermanentError):
    pass


class UnknownEventType(PermanentError):
    pass


class InvalidPayload(PermanentError):
    pass


class ForgedEvent(PermanentError):
    pass


class DomainRuleViolation(PermanentError):
    pass


class TransientError(MessagingError):
    """Worth another attempt later (a dependency is slow or down)."""


class PublishFailed(MessagingError):
    """The broker did not confirm the message."""


class Unroutable(PublishFailed):
    """A mandatory publish reached no queue: a topology error, never silently dropped."""


class AccessRefused(MessagingError):
    """The broker refused this login an operation (its permissions): a configuration to fix,
    never fixed by trying again at once."""


class PublishRefused(PublishFailed, AccessRefused):
    """The broker refused the login this publish (its permissions or topic permissions): a
    configuration error, like ``Unroutable``, never fixed by publishing again at once."""


class MissingQueue(MessagingError):
    """The broker has no queue of that name (not declared yet, or deleted)."""


class TopologyMismatch(MessagingError):
    """An exchange or queue already exists with arguments other than the declared ones."""
