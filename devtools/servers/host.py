"""What starting servers by hand needs from the machine: ports, processes, packages, users."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ServerError(RuntimeError):
    """A server could not be started or stopped; the message says why and where to look."""


def say(message: str) -> None:
    print(f"[infra] {message}", flush=True)


def warn(message: str) -> None:
    print(f"[infra] WARNING: {message}", file=sys.stderr, flush=True)


def is_root() -> bool:
    return os.geteuid() == 0


def tcp_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_port_free(port: int, what: str, setting: str) -> None:
    if tcp_open("127.0.0.1", port):
        raise ServerError(
            f"port {port} ({what}) on 127.0.0.1 is already in use by another process;"
            f" stop it or choose another port with {setting}=<port>"
        )


def pid_alive(pid: int | None) -> bool:
    """Alive and not a zombie (``kill -0`` alone would count a dead server that a container's
    PID 1 never reaped)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        digits = "".join(c for c in path.read_text().split("\n", 1)[0] if c.isdigit())
    except OSError:
        return None
    return int(digits) if digits else None


def wait_until(condition: Callable[[], bool], seconds: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def stop_pid(pid: int, grace: float = 30) -> None:
    """Wait for ``pid`` to exit after a polite stop; then SIGTERM, then SIGKILL."""
    for sig, wait in ((None, grace), (signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if sig is not None:
            warn(f"pid {pid} still alive; sending {sig.name}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if wait_until(lambda: not pid_alive(pid), wait):
            return
    warn(f"could not stop pid {pid}")


def spawn_detached(
    command: Sequence[str], *, log: Path, cwd: Path, env: dict[str, str] | None = None
) -> int:
    """Start a long-running server in a session of its own (no signal from the caller's
    terminal), stdin from /dev/null and its output appended to ``log``: it never holds the
    caller's terminal or pipe open (CI waits for inherited output to close), and no
    inherited file descriptor either (``close_fds``)."""
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return process.pid


def run_quietly(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def install_debian_packages(packages: Sequence[str]) -> None:
    """apt-get install, without letting Debian start the packaged servers: they would take
    the ports (5672, 4369, 5432) our own instances need. ``policy-rc.d`` exiting 101 is
    Debian's way to say so; it is removed afterwards if we made it."""
    if not packages:
        return
    sudo = [] if is_root() else ["sudo"]
    if sudo and shutil.which("sudo") is None:
        raise ServerError(f"missing packages ({' '.join(packages)}); run as root or install sudo")
    say(f"installing Debian packages: {' '.join(packages)} (apt-get update first)")
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        script = (
            "#!/bin/sh\n# temporary (devtools.servers): no service start on install\nexit 101\n"
        )
        subprocess.run(
            [*sudo, "tee", str(policy)],
            input=script,
            text=True,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run([*sudo, "chmod", "755", str(policy)], check=True)
    apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    try:
        for step in (
            ["update", "-q"],
            ["install", "-y", "-q", "--no-install-recommends", *packages],
        ):
            if subprocess.run([*apt, *step], stdin=subprocess.DEVNULL, check=False).returncode:
                raise ServerError(
                    f"apt-get {step[0]} failed while installing: {' '.join(packages)}"
                )
    finally:
        if made_policy:
            subprocess.run([*sudo, "rm", "-f", str(policy)], check=False)
