"""Several lablib Socket.IO server processes on one machine: a cluster to put behind a balancer.

Each worker is its own operating-system process (``python -m lablib serve --port 0``), so it
has its own Engine.IO sessions, exactly as a production cluster has: a session opened in one
worker is unknown to the others.  Each listens on 127.0.0.1, on a port the OS picks, and says
so on its standard output (``lablib serve: worker <pid> listening on http://127.0.0.1:<port>``);
the parent reads that line, so :meth:`Cluster.start` returns when every worker is listening.

From a notebook (top-level await) or a test::

    async with Cluster(3) as cluster:        # or: with Cluster(3) as cluster:
        cluster.ports                        # [41234, 41240, 41251]
        cluster.targets                      # [("127.0.0.1", 41234), ...]  (for a Balancer)

From a shell: ``python -m lablib serve --workers 3`` (see :mod:`lablib.cli`).

The application is ``module:attr``: a :class:`lablib.socketio.server.Server`, or a function
returning one.  The default, :func:`demo_app`, answers ``echo`` (the data back, as an event and as
the ack), ``broadcast`` (to every client *of this worker*: without an adapter, the others do not
hear it; with ``redis_url`` - ``python -m lablib serve --redis URL`` - every worker shares its
broadcasts through :class:`lablib.socketio.redis_adapter.RedisAdapter`, so all clients do) and
``whoami`` (the worker's pid and port, so a client can see which process serves it).
:func:`recovery_app` is the same with connection state recovery on: with ``--redis`` the
sessions and the packet log are in Redis (:mod:`lablib.socketio.redis_recovery`), so a client
whose reconnect lands on another worker is recovered there.

:meth:`Cluster.stop` sends SIGTERM (the worker closes its server: clients get the Engine.IO
close), waits ``stop_timeout`` seconds, then kills what is left.

In front of the workers: the relay's balancing mode (:class:`lablib.capture.relay.Balancer`,
the teaching instrument), or the real thing - :class:`ExternalBalancer` runs the
distribution's nginx or HAProxy with the templates of ``deploy/`` (filled by
:func:`render_config`)::

    with Cluster(3) as cluster, ExternalBalancer("haproxy", cluster.targets) as lb:
        ...clients connect to lb.url...
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import LablibError

__all__ = ["Cluster", "ClusterError", "ExternalBalancer", "demo_app", "recovery_app", "load_app",
           "render_config", "find_program", "DEFAULT_APP"]

DEFAULT_APP = "lablib.cluster:demo_app"
READY = re.compile(rb"lablib serve: worker (\d+) listening on http://([^:\s]+):(\d+)")


class ClusterError(LablibError):
    """A worker could not start (it exited, or did not say it listens in time)."""


def demo_app(adapter_factory=None, connection_state_recovery=None):
    """The default application of each worker: echo, broadcast, whoami (see the module doc)."""
    from .socketio.server import Server

    sio = Server(adapter_factory=adapter_factory,
                 connection_state_recovery=connection_state_recovery)

    @sio.on("echo")
    async def echo(sid, data=None):
        await sio.emit("echo", data, to=sid)
        return data

    @sio.on("broadcast")
    async def broadcast(sid, data=None):
        await sio.emit("broadcast", data)
        return data

    @sio.on("whoami")
    async def whoami(sid, data=None):
        return {"pid": os.getpid(), "port": sio.port}

    return sio


def recovery_app(adapter_factory=None):
    """:func:`demo_app` with connection state recovery (sessions kept one minute)."""
    return demo_app(adapter_factory, {"max_disconnection_duration": 60000})


def load_app(spec: str, redis_url: str | None = None):
    """``module:attr`` -> a Socket.IO Server (``attr`` is a Server or a function making one).

    ``redis_url``: the function is called with ``adapter_factory=RedisAdapter.factory(url)``
    (as :func:`demo_app` accepts), so the workers form one cluster over Redis.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:ATTR, got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if callable(target) and not hasattr(target, "eio"):
        if redis_url is not None:
            from .socketio.redis_adapter import RedisAdapter
            target = target(adapter_factory=RedisAdapter.factory(redis_url))
        else:
            target = target()
    elif redis_url is not None:
        raise ValueError(f"--redis needs an app that is a function taking adapter_factory=, "
                         f"and {spec} is a ready Server")
    if not hasattr(target, "eio"):
        raise ValueError(f"{spec} is not a lablib Socket.IO Server (nor makes one)")
    return target


async def run_worker(app: str, host: str, port: int, stop: asyncio.Event,
                     redis_url: str | None = None) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set; announce the port on stdout."""
    from .socketio.server import serve
    async with serve(load_app(app, redis_url), host, port) as server:
        print(f"lablib serve: worker {os.getpid()} listening on http://{host}:{server.port}",
              flush=True)
        if not os.isatty(1):
            # the parent read the announcement and reads no more: what the application prints
            # from now on goes to stderr, so it can never fill a pipe nobody empties
            os.dup2(2, 1)
        await stop.wait()


class Cluster:
    """``workers`` lablib Socket.IO server processes serving ``app``, on free ports of ``host``.

    ``start_timeout``: seconds for every worker to be listening (a loaded machine starts
    Python slowly); ``stop_timeout``: seconds a worker has to exit after SIGTERM.  ``env``:
    extra environment variables for the workers.  ``redis_url``: the workers share broadcasts,
    rooms and queries through the Redis adapter at that URL (see :func:`load_app`).
    """

    def __init__(self, workers: int = 2, app: str = DEFAULT_APP, *, host: str = "127.0.0.1",
                 start_timeout: float = 60.0, stop_timeout: float = 10.0,
                 env: dict[str, str] | None = None, redis_url: str | None = None) -> None:
        if workers < 1:
            raise ValueError("a cluster needs at least one worker")
        self.workers = workers
        self.app = app
        self.host = host
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.env = env
        self.redis_url = redis_url
        self.processes: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.pids: list[int] = []

    @property
    def targets(self) -> list[tuple[str, int]]:
        return [(self.host, port) for port in self.ports]

    @property
    def urls(self) -> list[str]:
        return [f"http://{self.host}:{port}" for port in self.ports]

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> "Cluster":
        """Start every worker; return when all listen (raise ClusterError, stopping them, if not)."""
        if self.processes:
            raise RuntimeError("the cluster is already started")
        env = {**os.environ, **(self.env or {})}
        command = [sys.executable, "-m", "lablib", "serve", "--workers", "1",
                   "--host", self.host, "--port", "0", "--app", self.app]
        if self.redis_url is not None:
            command += ["--redis", self.redis_url]
        deadline = time.monotonic() + self.start_timeout
        try:
            for _ in range(self.workers):
                self.processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, env=env))
            for process in self.processes:
                pid, port = self._wait_ready(process, deadline)
                self.pids.append(pid)
                self.ports.append(port)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, process: subprocess.Popen, deadline: float) -> tuple[int, int]:
        """Read the worker's announcement line, without blocking past ``deadline``."""
        fd = process.stdout.fileno()
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in line:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClusterError(f"worker {process.pid} did not start listening within "
                                       f"{self.start_timeout} s")
                if selector.select(remaining):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        code = process.wait()
                        raise ClusterError(f"worker {process.pid} exited with code {code} "
                                           f"before listening (its error is on stderr above)")
                    line += chunk
        match = READY.search(line)
        if match is None:
            raise ClusterError(f"worker {process.pid} said {line!r}, not where it listens")
        return int(match[1]), int(match[3])

    def stop(self) -> list[int]:
        """SIGTERM every worker, wait ``stop_timeout``, kill the rest; return the exit codes."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
            process.stdout.close()
        self.processes, self.ports, self.pids = [], [], []
        return codes

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> "Cluster":
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)


# --- balancer configurations (deploy/) ---------------------------------------------------------

def render_config(template: str, backends: list[tuple[str, int]], listen_port: int, *,
                  prefix: str = ".", sticky: bool = True) -> str:
    """Fill a ``deploy/`` template (nginx.conf, haproxy.cfg) for these backends.

    ``{{LISTEN_PORT}}`` and ``{{PREFIX}}`` (a directory for pid, logs and temp files) are
    replaced; a line marked ``# for each backend`` is repeated once per backend with
    ``{{NAME}}`` (``s0``, ``s1``, ...) and ``{{ADDRESS}}`` (``host:port``); with
    ``sticky=False`` the lines marked ``# sticky`` are left out - the same balancer, without
    what keeps a session on its server.
    """
    lines = []
    for line in template.splitlines():
        code, _, comment = line.partition("#")
        if comment.strip() == "sticky" and not sticky:
            continue
        if comment.strip() == "for each backend":
            for index, (host, port) in enumerate(backends):
                lines.append(code.rstrip().replace("{{NAME}}", f"s{index}")
                             .replace("{{ADDRESS}}", f"{host}:{port}"))
            continue
        lines.append(line)
    text = "\n".join(lines) + "\n"
    return text.replace("{{LISTEN_PORT}}", str(listen_port)).replace("{{PREFIX}}", prefix)


# --- nginx and HAProxy from the distribution, with deploy/'s templates ---------------------------

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy"
BALANCER_TEMPLATES = {"nginx": "nginx.conf", "haproxy": "haproxy.cfg"}


def find_program(name: str) -> str | None:
    """``name`` on PATH, or in /usr/sbin (Debian puts nginx and haproxy there, off a user's PATH)."""
    found = shutil.which(name)
    if found is None and os.access(f"/usr/sbin/{name}", os.X_OK):
        found = f"/usr/sbin/{name}"
    return found


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ExternalBalancer:
    """nginx or HAProxy (``kind``) in front of ``targets``, from ``deploy/``'s template.

    Runs in the foreground as a child process, unprivileged, on a free port of 127.0.0.1, with
    every file it writes (configuration, pid, logs, temp files) in a temporary directory
    (:attr:`directory`) removed at :meth:`stop`.  ``sticky=False`` leaves out the template's
    lines marked ``# sticky``: the same balancer in round-robin.  nginx logs one line per
    request, with the backend that answered, in ``directory / "access.log"``::

        with Cluster(3) as cluster, ExternalBalancer("nginx", cluster.targets) as lb:
            ...clients connect to lb.url...
    """

    host = "127.0.0.1"   #: the templates listen there

    def __init__(self, kind: str, targets: list[tuple[str, int]], *, sticky: bool = True,
                 start_timeout: float = 30.0, stop_timeout: float = 10.0) -> None:
        if kind not in BALANCER_TEMPLATES:
            raise ValueError(f"kind must be one of {', '.join(BALANCER_TEMPLATES)}, not {kind!r}")
        self.kind = kind
        self.targets = list(targets)
        self.sticky = sticky
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port = 0
        self.directory: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _command(self, program: str, config: Path) -> list[str]:
        if self.kind == "nginx":   # -e: where errors go before the configuration is read
            return [program, "-p", str(self.directory), "-c", str(config),
                    "-e", str(self.directory / "error.log")]
        return [program, "-f", str(config), "-db"]

    def start(self) -> "ExternalBalancer":
        program = find_program(self.kind)
        if program is None:
            raise ClusterError(f"{self.kind} is not installed: on Debian/Ubuntu, "
                               f"apt-get install {self.kind}")
        template = DEPLOY_DIR / BALANCER_TEMPLATES[self.kind]
        if not template.exists():
            raise ClusterError(f"{template} is missing: run from a checkout of the lab")
        # world-readable: nginx started as root runs its workers as another user
        self.directory = Path(tempfile.mkdtemp(prefix=f"lablib-{self.kind}-"))
        self.directory.chmod(0o755)
        self.port = _free_port(self.host)
        config = self.directory / template.name
        text = render_config(template.read_text(), self.targets, self.port,
                             prefix=str(self.directory), sticky=self.sticky)
        config.write_text(text)
        with open(self.directory / "output.log", "wb") as log:
            self.process = subprocess.Popen(self._command(program, config), stdout=log,
                                            stderr=subprocess.STDOUT)
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise ClusterError(f"{self.kind} exited with code {self.process.returncode}:\n"
                                   + self.logs())
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.kind} did not listen on {self.port} within "
                                   f"{self.start_timeout} s:\n" + self.logs())
            time.sleep(0.05)

    def logs(self) -> str:
        """What the balancer wrote to its output and error log so far."""
        parts = []
        for name in ("output.log", "error.log"):
            path = self.directory / name if self.directory else None
            if path is not None and path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def access_log(self) -> list[str]:
        """nginx only: one line per request, ``METHOD URI -> BACKEND STATUS``."""
        path = self.directory / "access.log" if self.directory else None
        return path.read_text().splitlines() if path is not None and path.exists() else []

    def stop(self) -> int | None:
        """SIGTERM, wait ``stop_timeout``, kill; remove the directory; return the exit code."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            try:
                code = self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
            self.process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        return code

    def __enter__(self) -> "ExternalBalancer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> "ExternalBalancer":
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)
