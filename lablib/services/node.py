"""The official Node socket.io stack, installed from the lockfile in ``interop/node/``.

``interop/node/package.json`` pins socket.io 4.x, socket.io-client 4.x,
@socket.io/redis-adapter 8.x and the node ``redis`` client 4.x; ``package-lock.json`` fixes every
version and checksum.  :func:`ensure_node_modules` runs ``npm ci`` there once - again only when
the lockfile changed - and :func:`run_node` runs a script of that directory (so its
``require("socket.io")`` finds those packages)::

    from lablib.services.node import ensure_node_modules, node_script

    ensure_node_modules()                        # npm ci, or nothing if up to date
    with node_script("redis_broadcast.js", url) as proc:   # interop/node/redis_broadcast.js
        line = proc.stdout.readline()

Node itself is a system package (``apt-get install nodejs``; Node >= 18).  Without it every
function raises :class:`~lablib.services.ServiceUnavailable` naming what to install, which the
tests turn into a skip with that reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

from . import ServiceUnavailable

__all__ = ["NODE_DIR", "find_node", "find_npm", "ensure_node_modules", "node_script"]

#: The directory with package.json, package-lock.json and the interop scripts.
NODE_DIR = Path(__file__).resolve().parents[2] / "interop" / "node"
#: Written into node_modules/ after a successful ``npm ci``: the lockfile's SHA-256.
STAMP = ".lablib-lock.sha256"
NPM_TIMEOUT = 600.0   #: a guard on ``npm ci`` (a cold install downloads ~45 packages)

_HOW_NODE = "install Node.js >= 18 (Debian: apt-get install nodejs npm)"


def find_node() -> str:
    """The ``node`` executable on PATH, or :class:`ServiceUnavailable`."""
    node = shutil.which("node")
    if node is None:
        raise ServiceUnavailable("node", "no `node` executable on PATH", _HOW_NODE)
    return node


def find_npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise ServiceUnavailable("npm", "no `npm` executable on PATH", _HOW_NODE)
    return npm


def _lock_digest(directory: Path) -> str:
    lock = directory / "package-lock.json"
    if not lock.is_file():
        raise ServiceUnavailable("node packages", f"{lock} is missing",
                                 "run from a checkout of the lablib repository (interop/node/)")
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def up_to_date(directory: Path = NODE_DIR) -> bool:
    """Was ``npm ci`` run in ``directory`` for its current lockfile?"""
    stamp = directory / "node_modules" / STAMP
    try:
        return stamp.read_text().strip() == _lock_digest(directory)
    except OSError:
        return False


def ensure_node_modules(directory: Path = NODE_DIR) -> Path:
    """``npm ci`` in ``directory`` unless node_modules already matches the lockfile.

    A file lock makes concurrent callers (several test processes) wait for one install instead
    of running ``npm ci`` over each other.  Returns ``directory/node_modules``.
    """
    find_node()
    digest = _lock_digest(directory)
    if up_to_date(directory):
        return directory / "node_modules"
    npm = find_npm()
    with open(directory / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not up_to_date(directory):   # another process may have finished meanwhile
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory,
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=NPM_TIMEOUT)
            if result.returncode != 0:
                raise ServiceUnavailable(
                    "node packages", f"`npm ci` in {directory} failed:\n"
                    f"{(result.stderr or result.stdout)[-2000:]}",
                    "check that the npm registry is reachable, then run `npm ci` there")
            (directory / "node_modules" / STAMP).write_text(digest + "\n")
    return directory / "node_modules"


@contextlib.contextmanager
def node_script(script: str, *args: str, directory: Path = NODE_DIR,
                env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``node <directory>/<script> args...`` with pipes; killed when the block ends.

    stdout is a text pipe the caller reads line by line (the scripts print one JSON object per
    line); stderr is kept for the error message.  The packages are installed first if needed.
    """
    node = find_node()
    ensure_node_modules(directory)
    process = subprocess.Popen(
        [node, str(directory / script), *args], cwd=directory, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
