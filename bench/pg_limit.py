"""What Postgres alone can commit with the accept transaction's exact SQL shape.

The statement is the API's own (``services.api.applications.repository.INSERT_SUBMISSIONS``)
for one submission per transaction (the API's group commit puts several in one when they
arrive together), its parameters replaced by literals and ``gen_random_uuid()``, run by
pgbench on the same server and database as the system, as the api role.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from glob import glob
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from services.api.applications.repository import (
    ACCEPTED_STATUS,
    ACCEPTED_STEPS_JSON,
    INSERT_SUBMISSIONS,
)
from services.api.statuses import PROGRESS

STATEMENT_TEXT = "x" * 1024
EVENT_BODY = json.dumps({"payload": "y" * 1400})
SHA256_LIKE = "md5(random()::text) || md5(random()::text)"  # 64 hex characters


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def accept_script(applicant_id: str) -> str:
    answer = _quote(json.dumps({"applicationId": "x", "status": "submitted"})) + "::jsonb"
    submission = (
        "jsonb_build_array(jsonb_build_object("
        "'row_number', 1, 'application_id', gen_random_uuid(),"
        f" 'applicant_id', {_quote(applicant_id)}, 'token_version', 0,"
        " 'program', 'Computer Science',"
        f" 'statement', {_quote(STATEMENT_TEXT)}, 'correlation_id', gen_random_uuid(),"
        f" 'key', gen_random_uuid(), 'fingerprint', {SHA256_LIKE}, 'answer', {answer},"
        " 'message_id', gen_random_uuid(), 'event_correlation_id', gen_random_uuid(),"
        f" 'event_body', {_quote(EVENT_BODY)}))"
    )
    documents = (
        "jsonb_build_array("
        + ", ".join(
            f"jsonb_build_object('row_number', 1, 'position', {n},"
            " 'document_id', gen_random_uuid(),"
            f" 'filename', 'document-{n}.pdf', 'content_type', 'application/pdf', 'size', 21002,"
            f" 'sha256', {SHA256_LIKE})"
            for n in (1, 2)
        )
        + ")"
    )
    values = {
        "submissions": submission,
        "documents": documents,
        "steps": _quote(ACCEPTED_STEPS_JSON),
        "status": _quote(ACCEPTED_STATUS.value),
        "progress": str(PROGRESS[ACCEPTED_STATUS]),
        "event_type": _quote("application.submitted"),
        "channel": _quote("outbox"),
        "outbox_schema": _quote("api"),
    }
    sql_text = re.sub(r"%\((\w+)\)s", lambda m: values[m.group(1)], INSERT_SUBMISSIONS)
    return " ".join(sql_text.split()) + ";\n"  # pgbench reads one command per line


def pgbench_binary() -> str:
    found = shutil.which("pgbench") or next(
        iter(sorted(glob("/usr/lib/postgresql/*/bin/pgbench"))), None
    )
    if found is None:
        raise RuntimeError("pgbench not found (Debian: postgresql-contrib / the server package)")
    return found


def run_pgbench(conninfo: str, applicant_id: str, seconds: int = 15, clients: int = 8) -> float:
    """Transactions per second pgbench reached."""
    params = conninfo_to_dict(conninfo)
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "accept.sql"
        script.write_text(accept_script(applicant_id))
        completed = subprocess.run(
            [
                pgbench_binary(),
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                "2",
                "-T",
                str(seconds),
                "-f",
                str(script),
                "-h",
                str(params.get("host", "127.0.0.1")),
                "-p",
                str(params.get("port", 5432)),
                "-U",
                str(params["user"]),
                str(params["dbname"]),
            ],
            env={"PGPASSWORD": str(params.get("password", "")), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{completed.stdout}\n{completed.stderr}")
    match = re.search(r"tps = ([0-9.]+)", completed.stdout)
    if match is None:
        raise RuntimeError(f"pgbench printed no tps:\n{completed.stdout}\n{completed.stderr}")
    return float(match.group(1))
