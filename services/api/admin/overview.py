"""The queue overview: each work queue of the topology with its retry tiers and DLQ beside it,
the broker's numbers and the operator's pause. Pure: statistics in, views out."""

from __future__ import annotations

from collections.abc import Mapping

from services.api.admin.management import QueueStats
from services.api.admin.views import DepthView, PauseState, QueueView, RetryTierView
from shared.control import control_queue_prefix
from shared.topology import Topology, dead_letter_queue_name, retry_queue_name


def queue_overview(
    topology: Topology,
    stats: Mapping[str, QueueStats],
    pauses: Mapping[str, PauseState] | None,
) -> list[QueueView]:
    """``pauses`` is None when the pause states could not be read: ``paused`` is then null."""
    views = []
    for spec in topology.queues:
        work = stats.get(spec.name, QueueStats(spec.name))
        dlq = dead_letter_queue_name(spec.name)
        pause = pauses.get(spec.name) if pauses is not None else None
        views.append(
            QueueView(
                name=spec.name,
                service=spec.service,
                lane=spec.lane,
                ready=work.ready,
                unacked=work.unacked,
                consumers=work.consumers,
                publish_rate=work.publish_rate,
                deliver_rate=work.deliver_rate,
                paused=None if pauses is None else bool(pause and pause.paused),
                paused_by=pause.updated_by if pause and pause.paused else None,
                paused_at=pause.updated_at if pause and pause.paused else None,
                retry_tiers=[
                    RetryTierView(
                        name=retry_queue_name(spec.name, delay),
                        delay_seconds=delay,
                        messages=stats.get(
                            retry_queue_name(spec.name, delay), QueueStats("")
                        ).messages,
                    )
                    for delay in spec.retry_tiers
                ],
                dead_letters=DepthView(name=dlq, messages=stats.get(dlq, QueueStats(dlq)).messages),
            )
        )
    return views


def listening_workers(service: str, stats: Mapping[str, QueueStats]) -> int:
    """Worker processes of ``service`` listening for control commands right now."""
    prefix = control_queue_prefix(service)
    return sum(queue.consumers for name, queue in stats.items() if name.startswith(prefix))
