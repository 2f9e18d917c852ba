"""``python -m deploy.definitions``: print the definitions document, or check files."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence

from deploy.definitions.check import check
from deploy.definitions.document import VHOST, export_definitions, render
from deploy.definitions.users import dev_users, users_from_env
from shared.system_topology import SYSTEM_TOPOLOGY


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.definitions",
        description="Print the RabbitMQ definitions document of the system topology.",
    )
    parser.add_argument("--vhost", default=VHOST)
    parser.add_argument(
        "--passwords-from-env",
        action="store_true",
        help="real passwords from <USER>_RABBITMQ_PASSWORD, with random salts",
    )
    parser.add_argument(
        "--check",
        nargs="+",
        metavar="FILE",
        help="exit non-zero when a user of these definitions has a development login",
    )
    args = parser.parse_args(argv)
    if args.check:
        check(args.check)
        return
    users = dev_users()
    salt: dict[str, bytes] | None = None
    if args.passwords_from_env:
        users = users_from_env(os.environ, [user.name for user in users])
        salt = {user.name: secrets.token_bytes(4) for user in users}
    document = export_definitions(SYSTEM_TOPOLOGY, users, vhost=args.vhost, salt=salt)
    sys.stdout.write(render(document))
