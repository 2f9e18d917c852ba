"""The dev SMTP catcher's mailbox: atomic files, read back in arrival order."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from devtools.smtp_catcher import CatcherSettings, read_mailbox, store_message


def raw_mail(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "a@example.org"
    message["To"] = "b@example.org"
    message["Subject"] = subject
    message.set_content("hello")
    return message.as_bytes()


def test_mailbox_reads_messages_in_name_order_and_ignores_temporary_files(tmp_path: Path) -> None:
    # Given two stored messages (stored out of order) and a half-written temporary file
    store_message(tmp_path, "0002-000001.eml", raw_mail("second"))
    store_message(tmp_path, "0001-000000.eml", raw_mail("first"))
    (tmp_path / ".abc.part").write_bytes(b"Subject: half")
    # When the mailbox is read
    messages = read_mailbox(tmp_path)
    # Then both complete messages come back, in order, and nothing else
    assert [m["Subject"] for m in messages] == ["first", "second"]
    assert all(isinstance(m, EmailMessage) for m in messages)
    assert messages[0].get_content().strip() == "hello"


def test_store_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    store_message(tmp_path / "new", "x.eml", raw_mail("s"))
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["x.eml"]


def test_a_missing_mailbox_is_empty(tmp_path: Path) -> None:
    assert read_mailbox(tmp_path / "nowhere") == []


def test_settings_from_environment_with_defaults() -> None:
    assert CatcherSettings.from_environment({}) == CatcherSettings(
        "127.0.0.1", 1025, Path(".run/mail")
    )
    assert CatcherSettings.from_environment(
        {"SMTP_HOST": "0.0.0.0", "SMTP_PORT": "2525", "MAIL_DIR": "/tmp/m"}
    ) == CatcherSettings("0.0.0.0", 2525, Path("/tmp/m"))


@pytest.mark.parametrize("bad_port", ["x", ""])
def test_a_bad_port_is_refused(bad_port: str) -> None:
    with pytest.raises(ValueError):
        CatcherSettings.from_environment({"SMTP_PORT": bad_port})
