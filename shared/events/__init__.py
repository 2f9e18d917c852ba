from shared.events.catalog import CATALOG, EventPayload, payload_model
from shared.events.envelope import Envelope, decode_envelope, new_envelope

__all__ = [
    "CATALOG",
    "Envelope",
    "EventPayload",
    "decode_envelope",
    "new_envelope",
    "payload_model",
]
