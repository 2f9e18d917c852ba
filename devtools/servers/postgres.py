"""A PostgreSQL cluster of the project's own, run with ``pg_ctl``.

The server refuses to run as root: as root, every server command runs as the ``postgres``
user (``runuser``), which must be able to reach the data folder. Under a project that user
cannot traverse (``/root/...``, mode 700), the cluster lives in a folder of its own under
``/var/tmp`` (it survives reboots, unlike ``/tmp``), recorded in ``.run/postgres/LOCATION``.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from devtools.servers.envfile import ROOT, RUN_DIR, write_atomically
from devtools.servers.host import (
    ServerError,
    is_root,
    read_pid,
    require_port_free,
    run_quietly,
    say,
    warn,
)

DATABASE = "admissions"
PASSWORD = "postgres"
_SERVER_ROOT = Path("/usr/lib/postgresql")


def installed() -> bool:
    return any(_SERVER_ROOT.glob("*/bin/initdb"))


def _newest_binaries() -> Path:
    found = sorted(_SERVER_ROOT.glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise ServerError(f"no PostgreSQL server found in {_SERVER_ROOT}/*/bin")
    return found[-1].parent


def url(port: int) -> str:
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"


def _project_hash() -> str:
    return hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]


class PostgresServer:
    def __init__(self, port: int, base: Path = RUN_DIR / "postgres") -> None:
        self.port = port
        self.base = base  # always exists; holds the data unless the fallback folder does
        location = base / "LOCATION"
        self.folder = Path(location.read_text().strip()) if location.exists() else base
        self._settle_paths()

    def _settle_paths(self) -> None:
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        socket = self.folder / "socket"
        # A unix socket's path must fit in ~107 bytes: deep project paths get a short one.
        self.socket = (
            socket if len(str(socket)) <= 90 else Path(f"/tmp/admissions-pg-{_project_hash()}")
        )
        version = self.data / "PG_VERSION"
        # The binaries of the version that made the cluster; else the newest installed.
        made_by = _SERVER_ROOT / version.read_text().strip() / "bin" if version.exists() else None
        self.bin = made_by if made_by and (made_by / "pg_ctl").exists() else _newest_binaries()

    @property
    def url(self) -> str:
        return url(self.port)

    def _as_owner(
        self, command: Sequence[str], **options: object
    ) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if is_root() else []
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [*prefix, *command], stdin=subprocess.DEVNULL, text=True, check=False, **options
        )

    def _pg_ctl(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return self._as_owner(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), *arguments], capture_output=True
        )

    # --- state ---------------------------------------------------------------------------

    def running(self) -> bool:
        return (self.data / "PG_VERSION").exists() and self._pg_ctl("status").returncode == 0

    def pid(self) -> int | None:
        return read_pid(self.data / "postmaster.pid")

    def running_port(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    # --- start and stop ------------------------------------------------------------------

    def prepare_folders(self) -> None:
        """Create the folders and hand them to the ``postgres`` user; fall back to
        ``/var/tmp`` when that user cannot reach the project."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.folder = self.base
        if is_root():
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as missing:
                raise ServerError(
                    "the 'postgres' OS user does not exist (is the postgresql package installed?)"
                ) from missing
            RUN_DIR.chmod(0o755)
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
            self.base.chmod(0o755)
            reachable = (
                run_quietly(
                    [
                        "runuser",
                        "-u",
                        "postgres",
                        "--",
                        "test",
                        "-w",
                        str(self.base),
                        "-a",
                        "-x",
                        str(self.base),
                    ]
                ).returncode
                == 0
            )
            if not reachable:
                self.folder = Path(f"/var/tmp/admissions-postgres-{_project_hash()}")
                if self.folder.exists() and self.folder.owner() != "postgres":
                    raise ServerError(
                        f"{self.folder} exists but is not owned by postgres; remove it"
                    )
                self.folder.mkdir(exist_ok=True)
                os.chown(self.folder, owner.pw_uid, owner.pw_gid)
                self.folder.chmod(0o700)
                warn(
                    f"user postgres cannot reach {self.base}; keeping the cluster in {self.folder}"
                )
        location = self.base / "LOCATION"
        if self.folder != self.base:
            location.write_text(f"{self.folder}\n")
        else:
            location.unlink(missing_ok=True)
        self._settle_paths()

    def start(self) -> None:
        self.prepare_folders()
        if self.running():
            port = self.running_port()
            if port is not None and port != self.port:
                raise ServerError(
                    f"our PostgreSQL already runs on port {port}; run 'scripts/infra.sh down'"
                    " before changing INFRA_PG_PORT"
                )
            say(f"PostgreSQL already running (pid {self.pid()}, port {self.port})")
        else:
            require_port_free(self.port, "PostgreSQL", "INFRA_PG_PORT")
            self._init()
            self._write_config()
            say(f"starting PostgreSQL (port {self.port}, data {self.data})")
            # -l: the server's output goes to its log, not to the caller's terminal or pipe.
            started = self._pg_ctl("-l", str(self.log), "-w", "-t", "60", "start")
            if started.returncode != 0:
                raise ServerError(
                    f"PostgreSQL failed to start: {started.stdout}{started.stderr} see {self.log}"
                )
            say(f"PostgreSQL started (pid {self.pid()})")
        self._create_database()

    def restart(self) -> None:
        if not self.running():
            raise ServerError("PostgreSQL is not running; use 'scripts/infra.sh up'")
        say(f"restarting PostgreSQL (pid {self.pid()})")
        restarted = self._pg_ctl("-l", str(self.log), "-m", "fast", "-w", "-t", "60", "restart")
        if restarted.returncode != 0:
            raise ServerError(f"PostgreSQL failed to restart; see {self.log}")
        say(f"PostgreSQL restarted (pid {self.pid()})")

    def stop(self) -> None:
        if not self.running():
            say("PostgreSQL: not running")
            return
        say(f"stopping PostgreSQL (pid {self.pid()})")
        self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")
        say("PostgreSQL stopped")

    def _init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        if self.data.exists() and any(self.data.iterdir()):
            raise ServerError(f"{self.data} exists but is not a PostgreSQL cluster; move it away")
        say(f"initialising PostgreSQL cluster in {self.data}")
        # Into a temporary folder, renamed at the end: an interrupted initdb leaves no
        # half-made data folder behind.
        temp = self.folder / "data.initdb"
        shutil.rmtree(temp, ignore_errors=True)
        password_file = self.folder / ".pwfile"
        password_file.write_text(f"{PASSWORD}\n")
        password_file.chmod(0o600)
        if is_root():
            shutil.chown(password_file, "postgres")
        # C.UTF-8 (always there on Debian) knows non-ASCII letters, unlike the C locale.
        locales = run_quietly(["locale", "-a"]).stdout.lower().split()
        locale = "--locale=C.UTF-8" if {"c.utf8", "c.utf-8"} & set(locales) else "--no-locale"
        made = self._as_owner(
            [
                str(self.bin / "initdb"),
                "-D",
                str(temp),
                "--username=postgres",
                f"--pwfile={password_file}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                locale,
            ],
            capture_output=True,
        )
        password_file.unlink()
        if made.returncode != 0:
            raise ServerError(f"initdb failed: {made.stdout}{made.stderr}")
        with open(temp / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# Added by devtools.servers: local settings, rewritten on every 'up'\n"
                "include_if_exists = 'infra.conf'\n"
            )
        temp.rename(self.data)

    def _write_config(self) -> None:
        self.socket.mkdir(parents=True, exist_ok=True)
        self.socket.chmod(0o755)
        conf = self.data / "infra.conf"
        write_atomically(
            conf,
            "# Generated by devtools.servers (local mode); rewritten on every 'up'.\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket}'\n"
            "max_connections = 200\n"
            "# fsync stays on: durability is measured, so do not trade it for speed.\n"
            "fsync = on\n",
            mode=0o600,
        )
        if is_root():
            for path in (self.socket, conf):
                shutil.chown(path, "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres")

    def _create_database(self) -> None:
        psql = [
            str(self.bin / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ]
        exists = run_quietly(
            [*psql, "-Atc", f"select 1 from pg_database where datname = '{DATABASE}'"]
        )
        if exists.stdout.strip() != "1":
            say(f"creating database {DATABASE}")
            created = run_quietly([*psql, "-c", f"CREATE DATABASE {DATABASE}"])
            if created.returncode != 0:
                raise ServerError(f"could not create database {DATABASE}: {created.stderr}")
