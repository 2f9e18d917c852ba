"""``hey -n 3000 -c 50`` with the standard multipart submission against a running system.

    make run                                   # in one terminal
    .venv/bin/python -m bench.hey_submissions  # in another (installs hey from Debian if missing)

Registers an applicant, writes one standard submission (two ~20 KiB PDFs and a 1 KiB
statement) to a file, lets hey send it ``-n`` times from ``-c`` connections, and prints hey's
summary and what the answers were: every answer must be 202, or 503 with Retry-After (hey does
not retry; it counts). hey sends the same bytes each time, so the documents land on the same
blobs, and no Idempotency-Key, so each 202 is a new application.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.workload import register_applicant, submission_factory


def hey_binary() -> str:
    found = shutil.which("hey")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "hey"], check=True, capture_output=True)
        found = shutil.which("hey")
    if found is None:
        raise RuntimeError("hey is not installed (Debian: apt-get install hey)")
    return found


def split_request(raw: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
    return headers, body


def main(api: str, requests: int, connections: int) -> None:
    token = asyncio.run(register_applicant(api))
    headers, body = split_request(submission_factory(api, token)())
    with tempfile.TemporaryDirectory() as folder:
        body_file = Path(folder) / "submission.bin"
        body_file.write_bytes(body)
        command = [
            hey_binary(),
            "-n", str(requests),
            "-c", str(connections),
            "-m", "POST",
            "-T", headers["Content-Type"],
            "-H", f"Authorization: {headers['Authorization']}",
            "-D", str(body_file),
            f"{api}/applications",
        ]  # fmt: skip
        done = subprocess.run(command, check=True, capture_output=True, text=True)
    print(done.stdout)
    statuses = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", done.stdout))
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    print(f"answers/s {rps.group(1) if rps else '?'}; statuses {statuses}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("-n", type=int, default=3000, help="requests")
    parser.add_argument("-c", type=int, default=50, help="concurrent connections")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse()
    main(args.api, args.n, args.c)
