"""deploy/rabbitmq/definitions.json: exported from the topology, least privilege per service."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from deploy.definitions.cli import main
from deploy.definitions.document import export_definitions, render
from deploy.definitions.passwords import hash_password, password_matches
from deploy.definitions.permissions import (
    ops_permissions,
    ops_topic_permissions,
    service_permissions,
)
from deploy.definitions.users import (
    dev_password,
    dev_users,
    service_user,
    users_from_env,
)
from shared.control import control_queue_name
from shared.manifest import SERVICES, ServiceSpec, service_names
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import (
    BindingDeclaration,
    ExchangeDeclaration,
    Exchanges,
    QueueDeclaration,
    QueueSpec,
    Topology,
    dead_letter_queue_name,
    declarations,
    retry_queue_name,
)

ROOT = Path(__file__).resolve().parents[3]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
DEV_ADMIN = ROOT / "deploy" / "rabbitmq" / "dev-admin.json"
REGENERATE = "python -m deploy.definitions > deploy/rabbitmq/definitions.json"
EX = SYSTEM_TOPOLOGY.exchanges
CONSUMERS = sorted({spec.service for spec in SYSTEM_TOPOLOGY.queues})
SPECS = {spec.name: spec for spec in SERVICES}


def allowed(pattern: str, name: str) -> bool:
    """RabbitMQ's check: the regex matches anywhere in the name (so ours anchor themselves)."""
    return re.search(pattern, name) is not None


def queues_of(service: str) -> dict[str, list[str]]:
    own = [spec for spec in SYSTEM_TOPOLOGY.queues if spec.service == service]
    return {
        "work": [spec.name for spec in own],
        "retry": [retry_queue_name(s.name, d) for s in own for d in s.retry_tiers],
        "dead": [dead_letter_queue_name(spec.name) for spec in own],
    }


def every_queue() -> list[str]:
    return [i.name for i in declarations(SYSTEM_TOPOLOGY) if isinstance(i, QueueDeclaration)]


def test_committed_definitions_match_a_fresh_export() -> None:
    # Given the committed file and the document the code exports now
    fresh = render(export_definitions(SYSTEM_TOPOLOGY, dev_users()))
    committed = DEFINITIONS.read_text() if DEFINITIONS.exists() else ""
    # Then they are the same, byte for byte
    assert committed == fresh, (
        f"{DEFINITIONS.relative_to(ROOT)} is out of date with shared/system_topology.py "
        f"(or deploy/definitions/); regenerate it with:\n    {REGENERATE}"
    )


def test_every_declaration_is_in_the_document_with_its_exact_arguments() -> None:
    # Given the exported document
    document = export_definitions(SYSTEM_TOPOLOGY, dev_users())
    queues = {q["name"]: q for q in document["queues"]}
    exchanges = {e["name"]: e["type"] for e in document["exchanges"]}
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in document["bindings"]}
    # Then each declaration the services make at start-up is there, and nothing else
    expected_queues = 0
    for item in declarations(SYSTEM_TOPOLOGY):
        if isinstance(item, QueueDeclaration):
            expected_queues += 1
            assert queues[item.name]["arguments"] == item.arguments
            assert queues[item.name]["durable"] is True
            assert queues[item.name]["vhost"] == "admissions"
        elif isinstance(item, ExchangeDeclaration):
            assert exchanges[item.name] == item.kind
        elif isinstance(item, BindingDeclaration):
            assert (item.exchange, item.queue, item.routing_key) in bindings
    assert len(queues) == expected_queues
    assert len(bindings) == len(document["bindings"])


def test_one_user_per_service_and_an_operator_for_the_ui() -> None:
    document = export_definitions(SYSTEM_TOPOLOGY, dev_users())
    users = {u["name"]: u for u in document["users"]}
    assert set(users) == {*service_names(), "ops", "operator"}
    assert users["operator"]["tags"] == ["administrator"]
    assert users["api"]["tags"] == ["management"]  # queue statistics for the admin API
    for name in [*service_names(), "ops"]:
        if name != "api":
            assert users[name]["tags"] == []
    for name, user in users.items():
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert password_matches(user["password_hash"], dev_password(name))
        assert not password_matches(user["password_hash"], "guest")
    permissions = {p["user"]: p for p in document["permissions"]}
    assert set(permissions) == set(users)
    assert {p["vhost"] for p in document["permissions"]} == {"admissions"}


def test_password_hash_is_rabbitmqs_salted_sha256() -> None:
    # The example of RabbitMQ's documentation (passwords: computing a hash)
    salt = bytes.fromhex("908DC60A")
    assert hash_password("test12", salt) == "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"


def test_the_export_is_stable_across_runs() -> None:
    first = render(export_definitions(SYSTEM_TOPOLOGY, dev_users()))
    second = render(export_definitions(SYSTEM_TOPOLOGY, dev_users()))
    assert first == second


@pytest.mark.parametrize("service", CONSUMERS)
def test_a_consumer_configures_and_reads_only_its_own_queues(service: str) -> None:
    # Given a consumer service's permissions
    granted = service_permissions(SYSTEM_TOPOLOGY, SPECS[service])
    own = queues_of(service)
    others = [q for q in every_queue() if q not in {n for names in own.values() for n in names}]
    # Then it may declare its queues, tiers and DLQ, and no other service's
    for name in own["work"] + own["retry"] + own["dead"]:
        assert allowed(granted.configure, name), name
        assert allowed(granted.write, name), name  # binding a queue needs write on it
    for name in own["work"] + own["retry"]:
        assert allowed(granted.read, name), name
    for name in others:
        assert not allowed(granted.configure, name), name
        assert not allowed(granted.write, name), name
        assert not allowed(granted.read, name), name
    # and it publishes only retries and dead letters (events go through the outbox and relay)
    assert allowed(granted.write, EX.retry)
    assert allowed(granted.write, EX.dead)
    assert not allowed(granted.write, EX.events)
    assert not allowed(granted.configure, EX.events)
    # and binds its queues to the exchanges that feed them
    for exchange in (EX.events, EX.retry, EX.dead, EX.control):
        assert allowed(granted.read, exchange)


@pytest.mark.parametrize("service", CONSUMERS)
def test_control_queues_belong_to_their_service_only(service: str) -> None:
    mine = control_queue_name(service, uuid.uuid4().hex)
    granted = service_permissions(SYSTEM_TOPOLOGY, SPECS[service])
    assert allowed(granted.configure, mine)
    assert allowed(granted.write, mine)
    assert allowed(granted.read, mine)
    for other in CONSUMERS:
        if other != service:
            theirs = control_queue_name(other, uuid.uuid4().hex)
            assert not allowed(granted.configure, theirs)
            assert not allowed(granted.read, theirs)


def test_only_the_ops_login_sends_control_commands_and_reads_dead_letter_queues() -> None:
    # issue 14, item 8: reading a DLQ allows purging it, so the api's login (internet-facing
    # replicas) reads none; the admin API's ops login reads them all and touches nothing else
    ops = ops_permissions(SYSTEM_TOPOLOGY)
    assert allowed(ops.write, EX.control)
    assert allowed(ops.write, EX.retry)
    for name in every_queue():
        assert allowed(ops.read, name) == name.endswith(".dlq"), name
        assert not allowed(ops.configure, name), name
        assert not allowed(ops.write, name), name
    for exchange in (EX.events, EX.dead):
        assert not allowed(ops.write, exchange)
    (replay,) = ops_topic_permissions(SYSTEM_TOPOLOGY)
    assert replay.exchange == EX.retry
    for name in every_queue():
        assert allowed(replay.write, name) == (name in {s.name for s in SYSTEM_TOPOLOGY.queues})
    for service in CONSUMERS:
        granted = service_permissions(SYSTEM_TOPOLOGY, SPECS[service])
        assert not allowed(granted.write, EX.control), service
        for name in every_queue():
            if name.endswith(".dlq"):
                assert not allowed(granted.read, name), (service, name)


def test_the_relay_only_publishes_events() -> None:
    relay = service_permissions(SYSTEM_TOPOLOGY, SPECS["relay"])
    assert allowed(relay.write, EX.events)
    for exchange in (EX.retry, EX.dead, EX.control, "", "amq.default"):
        assert not allowed(relay.write, exchange)
    for name in [*every_queue(), EX.events, control_queue_name("relay", uuid.uuid4().hex)]:
        assert not allowed(relay.configure, name)
        assert not allowed(relay.read, name)


def test_permissions_follow_a_different_topology() -> None:
    # Given another topology (namespaced exchanges, one queue of a new service)
    topology = Topology(
        Exchanges.namespaced("t1"), (QueueSpec("billing.invoices", "billing", ("x.y",)),)
    )
    document = export_definitions(
        topology,
        (service_user(ServiceSpec("billing", ()), "pw"), service_user(SPECS["relay"], "pw")),
        vhost="v",
    )
    # Then the permissions name its queues and exchanges, not the system's
    billing = next(p for p in document["permissions"] if p["user"] == "billing")
    assert allowed(billing["configure"], "billing.invoices.retry.2s")
    assert allowed(billing["write"], "t1.retry")
    assert not allowed(billing["write"], "admissions.retry")
    assert {q["vhost"] for q in document["queues"]} == {"v"}


def test_passwords_from_the_environment_get_random_salts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a password per user in the environment
    for user in dev_users():
        monkeypatch.setenv(f"{user.name.upper()}_RABBITMQ_PASSWORD", f"secret-{user.name}-7f3a9c21")
    # When the document is exported twice with them
    main(["--passwords-from-env"])
    first = json.loads(capsys.readouterr().out)
    main(["--passwords-from-env"])
    second = json.loads(capsys.readouterr().out)
    # Then each hash checks against that password, salted differently each time
    for a, b in zip(first["users"], second["users"], strict=True):
        assert password_matches(a["password_hash"], f"secret-{a['name']}-7f3a9c21")
        assert not password_matches(a["password_hash"], dev_password(a["name"]))
        assert a["password_hash"] != b["password_hash"]


def test_passwords_from_the_environment_are_all_required(monkeypatch: pytest.MonkeyPatch) -> None:
    for user in dev_users():
        monkeypatch.delenv(f"{user.name.upper()}_RABBITMQ_PASSWORD", raising=False)
    monkeypatch.setenv("API_RABBITMQ_PASSWORD", "x")
    with pytest.raises(SystemExit, match="RELAY_RABBITMQ_PASSWORD"):
        main(["--passwords-from-env"])


def test_the_development_admin_is_guest_on_the_default_vhost() -> None:
    # scripts/infra.sh (docker mode) and the tests log in as guest/guest on "/"
    document = json.loads(DEV_ADMIN.read_text())
    (guest,) = document["users"]
    assert guest["name"] == "guest"
    assert password_matches(guest["password_hash"], "guest")
    assert "administrator" in guest["tags"]
    assert {p["vhost"] for p in document["permissions"]} == {"/", "admissions"}
    assert [v["name"] for v in document["vhosts"]] == ["/"]


def test_every_work_queue_is_bounded_by_a_policy_operators_see() -> None:
    document = export_definitions(SYSTEM_TOPOLOGY, dev_users())
    bounding = [p for p in document["policies"] if "max-length" in p["definition"]]
    for spec in SYSTEM_TOPOLOGY.queues:
        (policy,) = [p for p in bounding if re.fullmatch(p["pattern"], spec.name)]
        assert policy["definition"]["max-length"] == spec.max_length
        assert policy["definition"]["overflow"] == "reject-publish"
        # a queue takes only the highest-priority policy: the leader locator must come along
        assert policy["definition"]["queue-leader-locator"] == "balanced"
        assert policy["priority"] > 0
    # retry tiers and dead-letter queues are not work queues
    assert not any(re.fullmatch(p["pattern"], "verifier.documents.dlq") for p in bounding)


@pytest.mark.parametrize("weak", ["operator-dev-password", "guest", "short-but-new"])
def test_the_production_export_refuses_weak_passwords(
    monkeypatch: pytest.MonkeyPatch, weak: str
) -> None:
    # Given strong passwords for everyone but the operator (an administrator)
    for user in dev_users():
        monkeypatch.setenv(f"{user.name.upper()}_RABBITMQ_PASSWORD", f"{user.name}-7f3a9c21e8d4")
    monkeypatch.setenv("OPERATOR_RABBITMQ_PASSWORD", weak)
    # Then the export refuses, naming it
    with pytest.raises(SystemExit, match="OPERATOR_RABBITMQ_PASSWORD"):
        main(["--passwords-from-env"])


def test_the_check_refuses_definitions_with_development_logins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """issue 14, item 8: make compose-up with APP_ENV=production runs this on the broker's
    definitions: a development password (any user's) or guest is refused, by name."""
    with pytest.raises(SystemExit, match="operator") as refused:
        main(["--check", str(ROOT / "deploy" / "rabbitmq" / "definitions.json")])
    assert all(name in str(refused.value) for name in [*service_names(), "ops"])
    with pytest.raises(SystemExit, match="guest"):
        main(["--check", str(DEV_ADMIN)])
    # A user given another user's development password is refused too
    swapped = export_definitions(
        SYSTEM_TOPOLOGY, [service_user(SPECS["api"], dev_password("relay"))]
    )
    (tmp_path / "swapped.json").write_text(render(swapped))
    with pytest.raises(SystemExit, match="api"):
        main(["--check", str(tmp_path / "swapped.json")])
    # And the production export passes
    for user in dev_users():
        monkeypatch.setenv(f"{user.name.upper()}_RABBITMQ_PASSWORD", f"{user.name}-7f3a9c21e8d4")
    strong = export_definitions(
        SYSTEM_TOPOLOGY, users_from_env(os.environ, [u.name for u in dev_users()])
    )
    (tmp_path / "strong.json").write_text(render(strong))
    main(
        [
            "--check",
            str(tmp_path / "strong.json"),
            str(ROOT / "deploy/rabbitmq/admin-production.json"),
        ]
    )
