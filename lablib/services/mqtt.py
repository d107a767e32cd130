"""A real MQTT broker with a WebSocket listener, started on free 127.0.0.1 ports and stopped after.

    with start_broker() as broker:          # amqtt by default
        broker.ws_url                        # 'ws://127.0.0.1:41234/mqtt'
        broker.tcp_port                      # plain MQTT over TCP, for comparisons
        Client(broker.ws_url, **broker.credentials)   # the lab login (amqtt), or none

Which broker (first match):

1. ``MQTT_URL`` (e.g. ``ws://broker.lan:8080/mqtt``): an existing broker; nothing is started.
   A login goes in the URL's userinfo: ``ws://user:pass@broker.lan:8080/mqtt``.
2. ``kind="mosquitto"`` (or ``LABLIB_MQTT_BROKER=mosquitto``): the distribution's ``mosquitto``,
   found at ``LABLIB_MOSQUITTO`` or on ``PATH``/``/usr/sbin`` (Debian: ``apt-get install
   mosquitto``), with a generated config: a ``websockets`` listener and an ``mqtt`` listener.
3. ``kind="amqtt"`` (the default): amqtt, the maintained asyncio broker from the package index.

Why amqtt runs from a venv of its own: amqtt 0.12.1 (and 0.11.x) require ``websockets==15.0.1``
exactly, and lablib compares itself against ``websockets>=17,<18``: one environment cannot hold
both.  So the first start (or ``python -m lablib.services.mqtt install``, which ``make venv``
runs) creates a small venv with ``amqtt==AMQTT_VERSION`` in lablib's cache
(``$LABLIB_CACHE``, else ``$XDG_CACHE_HOME/lablib``, else ``~/.cache/lablib``), and the broker runs
there as a subprocess.  ``LABLIB_AMQTT_PYTHON`` names another interpreter that has amqtt.

Why amqtt gets a login: amqtt treats the session of a client that authenticated anonymously as
disposable.  With ``allow_anonymous: true`` (every client is then anonymous) it keeps no QoS 1/2
message for a ``clean_session=0`` client while that client is away, and its session monitor drops
the disconnected session within a second - so a relay cut would lose messages that MQTT 3.1.1
§3.1.2.4 says the server stores.  lablib therefore starts amqtt with its file-based
authentication plugin and one user, ``lab``, whose password is drawn from :mod:`secrets` at each
start and written (argon2-hashed) to a password file in the broker's temporary directory.  The
broker object carries it: ``broker.username``, ``broker.password`` and ``broker.credentials``
(keyword arguments for :class:`lablib.mqtt.client.Client`).  mosquitto keeps persistent sessions
of anonymous clients, so it runs without a login (``broker.credentials == {}``).

A broker that cannot start raises :class:`BrokerUnavailable` naming what is missing and how to
get it.  Ports: the broker needs explicit numbers, so free ones are picked (bind to port 0, read,
close); if another process takes one in between, the start is retried on new ports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import LablibError

__all__ = ["AMQTT_VERSION", "LAB_USER", "Broker", "BrokerUnavailable", "start_broker", "amqtt_python",
           "mosquitto_path"]

#: The amqtt release the broker venv installs (pinned: the lab's outputs depend on its behaviour).
AMQTT_VERSION = "0.12.1"

#: How long a broker may take to open its ports.
START_TIMEOUT = 60.0


class BrokerUnavailable(LablibError):
    """The MQTT broker cannot be started; the message says what is missing and how to get it."""


@dataclass
class Broker:
    """A running broker: where to reach it, and how to stop it (a no-op for ``MQTT_URL``)."""

    kind: str                      #: "amqtt", "mosquitto" or "external"
    ws_url: str                    #: the WebSocket listener, e.g. ws://127.0.0.1:PORT/mqtt
    tcp_port: int | None = None    #: plain MQTT over TCP (None for an external broker)
    process: subprocess.Popen | None = field(default=None, repr=False)
    workdir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    username: str | None = None    #: the login the broker requires (None: anonymous)
    password: str | None = field(default=None, repr=False)

    @property
    def credentials(self) -> dict:
        """Keyword arguments for :class:`lablib.mqtt.client.Client`: ``username`` and ``password``
        (bytes, as the CONNECT packet carries them, §3.1.3.5), or ``{}`` for no login."""
        if self.username is None:
            return {}
        return {"username": self.username,
                "password": None if self.password is None else self.password.encode()}

    @property
    def host(self) -> str:
        return urlsplit(self.ws_url).hostname or "127.0.0.1"

    @property
    def ws_port(self) -> int:
        return urlsplit(self.ws_url).port or 80

    @property
    def ws_path(self) -> str:
        return urlsplit(self.ws_url).path or "/"

    def log(self) -> str:
        """What the broker wrote to its log so far (empty for an external broker)."""
        if self.workdir is None:
            return ""
        path = Path(self.workdir.name) / "broker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Terminate the broker process (then kill it if it lingers) and remove its files."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_broker(kind: str | None = None) -> Broker:
    """Start (or find, with ``MQTT_URL``) a broker; see the module docstring for the choice."""
    url = os.environ.get("MQTT_URL")
    if url:
        return _external(url)
    kind = kind or os.environ.get("LABLIB_MQTT_BROKER", "amqtt")
    if kind == "amqtt":
        command = _amqtt_command
    elif kind == "mosquitto":
        command = _mosquitto_command
    else:
        raise BrokerUnavailable(f"unknown broker kind {kind!r}: use 'amqtt' or 'mosquitto'")
    last_log = ""
    for _ in range(3):      # a port taken between picking and binding: try new ports
        broker = _launch(kind, command)
        if broker is not None and broker.process is not None:
            return broker
        last_log = broker.log() if broker else ""
    raise BrokerUnavailable(f"{kind} did not start; its log ends with:\n{last_log[-2000:]}")


def _external(url: str) -> Broker:
    """``MQTT_URL``, whose userinfo (``ws://user:pass@host:port/mqtt``) becomes the login: MQTT
    carries it in CONNECT (§3.1.3.4-5), not in the WebSocket handshake, so it leaves the URL."""
    from ..mqtt.client import split_userinfo      # here: `install` needs none of the client
    ws_url, username, password = split_userinfo(url)
    return Broker("external", ws_url, username=username, password=password)


# --- launching ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(kind: str, command) -> Broker | None:
    workdir = tempfile.TemporaryDirectory(prefix=f"lablib-{kind}-")
    ws_port, tcp_port = _free_port(), _free_port()
    username, password = (LAB_USER, secrets.token_urlsafe(16)) if kind == "amqtt" else (None, None)
    argv = command(Path(workdir.name), ws_port, tcp_port)
    env = dict(os.environ)
    if password is not None:
        env[_PASSWORD_ENV] = password       # not on the command line: `ps` shows that to everyone
    log = open(Path(workdir.name) / "broker.log", "wb")
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               cwd=workdir.name, start_new_session=True, env=env)
    log.close()
    broker = Broker(kind, f"ws://127.0.0.1:{ws_port}/mqtt", tcp_port, process, workdir,
                    username, password)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:      # exited: a taken port, a bad config, ...
            broker.process = None
            return broker
        if _listening(ws_port) and _listening(tcp_port):
            return broker
        time.sleep(0.05)
    text = broker.log()
    broker.stop()
    raise BrokerUnavailable(f"{kind} did not open its ports within {START_TIMEOUT}s; log:\n{text[-2000:]}")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- amqtt ----------------------------------------------------------------------------------------

def _cache_dir() -> Path:
    if os.environ.get("LABLIB_CACHE"):
        return Path(os.environ["LABLIB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lablib"


def amqtt_python(install: bool = True) -> Path:
    """The interpreter that runs amqtt: ``LABLIB_AMQTT_PYTHON``, else the cache's venv
    (created on first use when ``install`` is True)."""
    if os.environ.get("LABLIB_AMQTT_PYTHON"):
        return Path(os.environ["LABLIB_AMQTT_PYTHON"])
    target = _cache_dir() / f"amqtt-{AMQTT_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"
    python = target / "bin" / "python"
    if (target / ".complete").exists():
        return python
    if not install:
        raise BrokerUnavailable("amqtt is not installed: run `python -m lablib.services.mqtt install`")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)         # two processes must not build it at once
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            venv.EnvBuilder(with_pip=True).create(target)
            result = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                                     "--disable-pip-version-check", f"amqtt=={AMQTT_VERSION}"],
                                    capture_output=True, text=True)
            if result.returncode:
                raise BrokerUnavailable(
                    f"could not install amqtt=={AMQTT_VERSION} into {target} (PyPI unreachable?); "
                    f"set MQTT_URL to use an existing broker.\n{result.stderr[-2000:]}")
            (target / ".complete").touch()
    return python


#: The one user of a lablib-started amqtt (its password is new at every start).
LAB_USER = "lab"

_PASSWORD_ENV = "LABLIB_MQTT_PASSWORD"

# Runs in amqtt's venv: hash the password from the environment into amqtt's password file (argon2,
# with pwdlib, which amqtt depends on; cheap parameters - the password is random, not a person's,
# and every CONNECT verifies it), then start amqtt's own broker script.
_AMQTT_LAUNCHER = f"""\
import os, sys
from pwdlib.hashers.argon2 import Argon2Hasher
password = os.environ.pop({_PASSWORD_ENV!r})
hashed = Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1).hash(password)
with open("passwd", "w", encoding="utf-8", opener=lambda p, f: os.open(p, f, 0o600)) as file:
    file.write(f"{LAB_USER}:{{hashed}}\\n")
from amqtt.scripts.broker_script import main
sys.argv = ["amqtt", "-c", "amqtt.yaml"]
main()
"""


def _amqtt_command(workdir: Path, ws_port: int, tcp_port: int) -> list[str]:
    # JSON is YAML: no YAML writer needed on our side.  No $SYS plugin (it publishes every 20 s).
    # Only the file plugin: a CONNECT without a username or with a wrong password is refused, and no
    # session is anonymous (see the module docstring for why that matters).
    password_file = json.dumps(str(workdir / "passwd"))
    config = (
        '{"listeners": {'
        f'"default": {{"type": "tcp", "bind": "127.0.0.1:{tcp_port}"}}, '
        f'"ws": {{"type": "ws", "bind": "127.0.0.1:{ws_port}"}}}}, '
        '"plugins": {"amqtt.plugins.authentication.FileAuthPlugin": '
        f'{{"password_file": {password_file}}}}}}}'
    )
    (workdir / "amqtt.yaml").write_text(config)
    (workdir / "launch_amqtt.py").write_text(_AMQTT_LAUNCHER)
    python = amqtt_python()
    return [str(python), str(workdir / "launch_amqtt.py")]


# --- mosquitto ------------------------------------------------------------------------------------

def mosquitto_path() -> Path | None:
    """``LABLIB_MOSQUITTO``, else ``mosquitto`` on PATH or in /usr/sbin (Debian's place), else None."""
    explicit = os.environ.get("LABLIB_MOSQUITTO")
    if explicit:
        return Path(explicit)
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def _mosquitto_command(workdir: Path, ws_port: int, tcp_port: int) -> list[str]:
    path = mosquitto_path()
    if path is None or not path.exists():
        raise BrokerUnavailable("mosquitto not found: `apt-get install mosquitto` (Debian), or set "
                                "LABLIB_MOSQUITTO to its path")
    (workdir / "mosquitto.conf").write_text(
        "per_listener_settings false\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "log_dest stdout\n"
        f"listener {tcp_port} 127.0.0.1\n"
        "protocol mqtt\n"
        f"listener {ws_port} 127.0.0.1\n"
        "protocol websockets\n")
    return [str(path), "-c", str(workdir / "mosquitto.conf")]


def main(argv: list[str] | None = None) -> int:
    """``python -m lablib.services.mqtt install``: build the amqtt venv now (``make venv`` does)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["install"]:
        print(amqtt_python())
        return 0
    print("usage: python -m lablib.services.mqtt install", file=sys.stderr)
    return 2


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
