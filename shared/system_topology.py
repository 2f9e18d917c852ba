"""Every queue of the system, in one place: who consumes what, with which policy.

Services declare their own part at start-up (``SYSTEM_TOPOLOGY.for_service(name)``);
``deploy/rabbitmq/definitions.json`` is exported from the whole of it.
"""

from __future__ import annotations

from shared.topology import Exchanges, QueueSpec, Topology

# Mailer lanes: the event types each carries, its attempts, backoff, concurrency and SLA.
MAILER_LANES: dict[str, QueueSpec] = {
    "critical": QueueSpec(
        "mailer.critical",
        "mailer",
        ("auth.password_reset_requested", "auth.otp_requested"),
        max_attempts=5,
        retry_delays=(1.0, 2.0, 4.0, 8.0),
        prefetch=16,
        lane="critical",
        sla_seconds=1.0,
    ),
    "high": QueueSpec(
        "mailer.high",
        "mailer",
        ("payment.initiated", "payment.completed", "payment.failed"),
        max_attempts=3,
        retry_delays=(2.0, 4.0),
        prefetch=16,
        lane="high",
        sla_seconds=5.0,
    ),
    "medium": QueueSpec(
        "mailer.medium",
        "mailer",
        ("application.submitted", "documents.rejected"),
        max_attempts=2,
        retry_delays=(5.0,),
        prefetch=8,
        lane="medium",
        sla_seconds=30.0,
    ),
    "low": QueueSpec(
        "mailer.low",
        "mailer",
        ("report.requested",),
        max_attempts=1,
        prefetch=4,
        lane="low",
        sla_seconds=300.0,
    ),
    "batch": QueueSpec(
        "mailer.batch",
        "mailer",
        # The announcement, then one delivery per recipient that its expansion emits.
        ("announcement.published", "announcement.delivery"),
        max_attempts=1,
        # Deliveries in hand: the lane's rate times the time one takes (its transaction and
        # the provider's answer; the token bucket, not this, holds the lane to its rate). 16
        # reach 20/s with a provider answering in 0.1 s; 2 did not (bench/BULK.md).
        prefetch=16,
        lane="batch",
    ),
}

# Hops the lean pipeline removed: the accept statement writes "verifying" itself, the status
# history reads the mailer's record of sent mail, a completed payment is the completion.
RETIRED_BINDINGS: tuple[tuple[str, str], ...] = (
    ("api.projector", "application.submitted"),
    ("api.projector", "email.sent"),
    ("mailer.medium", "application.completed"),
)

SYSTEM_TOPOLOGY = Topology(
    Exchanges(),
    (
        QueueSpec(
            "verifier.documents",
            "verifier",
            ("application.submitted",),
            max_attempts=4,
            prefetch=8,
        ),
        QueueSpec(
            "payments.applications",
            "payments",
            ("documents.verified", "payment.webhook_received"),
            max_attempts=4,
            prefetch=16,
        ),
        *MAILER_LANES.values(),
        QueueSpec(
            "api.projector",
            "api",
            # Not application.submitted: the accept statement itself writes "verifying"; not
            # the mails: the status history reads the mailer's record (``application_mail``).
            (
                "documents.verified",
                "documents.rejected",
                "payment.initiated",
                "payment.completed",
                "payment.failed",
            ),
            max_attempts=5,
            prefetch=64,
            # Its handler only reads and writes the API's tables: deliveries in hand share a
            # transaction (one claim, one commit for up to 32 events).
            batch_size=32,
        ),
    ),
    retired_bindings=RETIRED_BINDINGS,
)
