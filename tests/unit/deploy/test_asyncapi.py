"""deploy/asyncapi.json: the AsyncAPI 3.0 document of every event, exported from the catalog, the
topology and the manifest, and valid against the AsyncAPI JSON schema (vendored: see
asyncapi_schema/README.md)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT7

from deploy.asyncapi import render
from shared.asyncapi import asyncapi_document
from shared.consumer.policy import Retry, retry_headers
from shared.events.catalog import CATALOG, ApplicationSubmitted, DocumentRef, ReportRequested
from shared.events.envelope import new_envelope
from shared.events.signing import EventSigner
from shared.manifest import SERVICES
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import Exchanges, QueueSpec, Topology

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "deploy" / "asyncapi.json"
REGENERATE = "python -m deploy.asyncapi > deploy/asyncapi.json"
SPEC_SCHEMA = Path(__file__).parent / "asyncapi_schema" / "3.0.0.json"
DOCUMENT_URI = "urn:admissions:asyncapi"


@cache
def spec_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SPEC_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def spec_errors(document: dict[str, Any]) -> list[str]:
    """Where and why the document is invalid; under a ``oneOf`` (a reference or an object),
    the deepest reason that is not the reference's missing ``$ref``."""
    found = []
    for error in spec_validator().iter_errors(document):
        reason = error
        while reason.context:
            reason = max(
                reason.context, key=lambda e: (len(e.absolute_path), "'$ref'" not in e.message)
            )
        where = "/".join(map(str, reason.absolute_path)) or "(root)"
        found.append(f"{where}: {reason.message[:200]}")
    return found


def references(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def resolve(document: dict[str, Any], reference: str) -> Any:
    """A local JSON pointer (``#/a/b``) of the document, or KeyError."""
    assert reference.startswith("#/"), reference
    node: Any = document
    for part in reference[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validator_of(document: dict[str, Any], pointer: str) -> jsonschema.Draft7Validator:
    """Validates against the schema at ``pointer`` of the document, its references resolved
    inside the document, as an AsyncAPI tool would."""
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, DRAFT7.create_resource(document)
    )
    return jsonschema.Draft7Validator({"$ref": f"{DOCUMENT_URI}{pointer}"}, registry=registry)


# --- the committed file ---------------------------------------------------------------------


def test_committed_document_matches_a_fresh_export() -> None:
    # Given the committed file and the document the code exports now
    fresh = render(asyncapi_document())
    committed = COMMITTED.read_text() if COMMITTED.exists() else ""
    # Then they are the same, byte for byte
    assert committed == fresh, (
        f"{COMMITTED.relative_to(ROOT)} is out of date with the event catalog, the topology "
        f"or the manifest; regenerate it with:\n    {REGENERATE}"
    )


def test_the_committed_document_is_valid_asyncapi_3() -> None:
    document = json.loads(COMMITTED.read_text())
    assert document["asyncapi"] == "3.0.0"
    assert spec_errors(document) == []


# --- the schema check rejects a broken document ---------------------------------------------


def _without_info_version(document: dict[str, Any]) -> None:
    del document["info"]["version"]


def _publish_instead_of_send(document: dict[str, Any]) -> None:
    document["operations"]["api.send.application.submitted"]["action"] = "publish"  # 2.x word


def _operation_without_channel(document: dict[str, Any]) -> None:
    del document["operations"]["verifier.receive.verifier.documents"]["channel"]


def _queue_binding_with_an_exchange(document: dict[str, Any]) -> None:
    amqp = document["channels"]["verifier.documents"]["bindings"]["amqp"]
    amqp["exchange"] = {"name": "admissions.events", "type": "topic"}


def _unknown_field_in_a_message(document: dict[str, Any]) -> None:
    document["components"]["messages"]["payment.failed"]["payloadSchema"] = {}


def _an_exchange_type_amqp_does_not_have(document: dict[str, Any]) -> None:
    document["channels"]["payment.failed"]["bindings"]["amqp"]["exchange"]["type"] = "delayed"


# (the breakage, what the schema says of it)
BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "info without its required version": (
        _without_info_version,
        "info: 'version' is a required property",
    ),
    "an AsyncAPI 2 action": (
        _publish_instead_of_send,
        "action: 'publish' is not one of ['send', 'receive']",
    ),
    "an operation without its required channel": (
        _operation_without_channel,
        "'channel' is a required property",
    ),
    "a queue channel's AMQP binding naming an exchange": (
        _queue_binding_with_an_exchange,
        "bindings/amqp/is: 'routingKey' was expected",
    ),
    "a field the message object does not have": (
        _unknown_field_in_a_message,
        "'payloadSchema' does not match any of the regexes",
    ),
    "an exchange type AMQP does not have": (
        _an_exchange_type_amqp_does_not_have,
        "exchange/type: 'delayed' is not one of",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_the_schema_rejects_a_broken_document(breakage: str) -> None:
    # Given the document, broken in one way
    document = copy.deepcopy(asyncapi_document())
    breaks, reason = BREAKAGES[breakage]
    breaks(document)
    # Then the AsyncAPI schema refuses it, for that reason
    errors = spec_errors(document)
    assert any(reason in error for error in errors), errors


def test_a_document_of_another_version_is_rejected() -> None:
    document = {**asyncapi_document(), "asyncapi": "2.6.0"}
    assert spec_errors(document)


# --- what the schema cannot check -----------------------------------------------------------


def test_every_reference_resolves_inside_the_document() -> None:
    document = asyncapi_document()
    found = list(references(document))
    assert found
    for reference in found:
        resolve(document, reference)  # KeyError names the one that does not


def test_an_operation_sends_or_receives_only_its_channels_messages() -> None:
    """AsyncAPI 3.0: an operation's messages MUST be a subset of its channel's."""
    document = asyncapi_document()
    for name, operation in document["operations"].items():
        channel = operation["channel"]["$ref"]
        for reference in operation["messages"]:
            assert reference["$ref"].startswith(f"{channel}/messages/"), name
            resolve(document, reference["$ref"])


# --- what it says ----------------------------------------------------------------------------


def test_every_event_type_is_sent_by_its_owner_from_the_manifest() -> None:
    document = asyncapi_document()
    outboxes = {spec.name for spec in SERVICES if spec.has_outbox}
    for event_type, model in CATALOG.items():
        assert document["channels"][event_type]["address"] == event_type
        assert document["components"]["messages"][event_type]["title"] == model.__name__
        senders = [
            name
            for name, op in document["operations"].items()
            if op["action"] == "send" and op["channel"]["$ref"] == f"#/channels/{event_type}"
        ]
        assert senders == [f"{model.published_by}.send.{event_type}"]
        assert model.published_by in outboxes


def test_every_queue_is_received_by_its_service_with_the_types_bound_to_it() -> None:
    document = asyncapi_document()
    receives = {
        name: op for name, op in document["operations"].items() if op["action"] == "receive"
    }
    expected = {f"{q.service}.receive.{q.name}": q for q in SYSTEM_TOPOLOGY.queues}
    assert set(receives) == set(expected)
    for name, queue in expected.items():
        messages = [ref["$ref"].rsplit("/", 1)[-1] for ref in receives[name]["messages"]]
        assert messages == list(queue.bindings)
        assert receives[name]["tags"] == [{"name": queue.service}]
        amqp = document["channels"][queue.name]["bindings"]["amqp"]
        assert amqp["is"] == "queue" and amqp["queue"]["name"] == queue.name


def test_a_queues_channel_tells_its_retries_and_dead_letter_queue() -> None:
    channels = asyncapi_document()["channels"]
    assert "2s, 4s, 8s" in channels["verifier.documents"]["description"]
    assert "`verifier.documents.dlq`" in channels["verifier.documents"]["description"]
    assert "One attempt" in channels["mailer.low"]["description"]


def test_a_queue_named_like_an_event_type_is_refused() -> None:
    topology = Topology(
        Exchanges(), (QueueSpec("payment.failed", "payments", ("payment.failed",)),)
    )
    with pytest.raises(ValueError, match=r"payment\.failed"):
        asyncapi_document(topology=topology)


# --- a real event against its message -------------------------------------------------------


def submitted() -> ApplicationSubmitted:
    document = DocumentRef(
        document_id="d-1",
        filename="transcript.pdf",
        content_type="application/pdf",
        size=1024,
        sha256="a" * 64,
    )
    return ApplicationSubmitted(
        application_id="a-1",
        applicant_id="u-1",
        applicant_email="alice@example.org",
        program="physics",
        documents=[document],
    )


def report() -> ReportRequested:
    return ReportRequested.model_validate(
        {
            "report_id": "r-1",
            "kind": "applications",
            "filters": {"program": "physics", "created_from": "2026-01-01T00:00:00Z"},
            "recipient": "admin@example.org",
        }
    )


@pytest.mark.parametrize("make", [submitted, report])
def test_an_event_as_the_relay_publishes_it_matches_its_message(make: Callable[[], Any]) -> None:
    # Given an event's body, and its headers as the relay signs it and a retry adds to them
    payload = make()
    body = new_envelope(payload, correlation_id="req-1").encode()
    signed = EventSigner.development(payload.published_by).headers(body)
    retried = retry_headers(
        signed, Retry(delay=2.0, next_attempt=2), OSError("x"), datetime.now(UTC)
    )
    document = asyncapi_document()
    message = f"#/components/messages/{payload.event_type}"
    # Then the document's schemas accept them
    validator_of(document, f"{message}/payload").validate(json.loads(body))
    validator_of(document, f"{message}/headers").validate(signed)
    validator_of(document, f"{message}/headers").validate(retried)


def test_a_payload_or_headers_that_do_not_match_are_refused() -> None:
    # Given a valid event
    payload = submitted()
    body = json.loads(new_envelope(payload).encode())
    document = asyncapi_document()
    schema = validator_of(document, "#/components/messages/application.submitted/payload")
    headers = validator_of(document, "#/components/messages/application.submitted/headers")
    # Then a missing field, another type's name, an extra field and a foreign signer fail
    missing = copy.deepcopy(body)
    del missing["payload"]["applicant_email"]
    other_type = {**body, "type": "documents.verified"}
    extra = copy.deepcopy(body)
    extra["payload"]["grade"] = "A"
    for broken in (missing, other_type, extra):
        assert not schema.is_valid(broken)
    assert not headers.is_valid({"x-signed-by": "mailer", "x-signature": "c2ln"})
    assert not headers.is_valid({"x-signed-by": "api"})
