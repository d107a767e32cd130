"""lablib.services.node: npm ci from the committed lockfile, once; a clear skip without Node."""

from __future__ import annotations

import json
import shutil

import pytest

from lablib.services import ServiceUnavailable
from lablib.services import node as service
from tests.node_support import node_modules  # noqa: F401 (a fixture)


def _version(modules, package: str) -> str:
    return json.loads((modules / package / "package.json").read_text())["version"]


@pytest.mark.node
def test_npm_ci_installs_the_pinned_majors(node_modules):  # noqa: F811
    assert _version(node_modules, "socket.io").startswith("4.")
    assert _version(node_modules, "socket.io-client").startswith("4.")
    assert _version(node_modules, "@socket.io/redis-adapter").startswith("8.")
    assert _version(node_modules, "redis").startswith("4.")
    lock = json.loads((service.NODE_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@socket.io/redis-adapter"]["version"] == \
        _version(node_modules, "@socket.io/redis-adapter")


@pytest.mark.node
def test_a_second_call_does_not_run_npm(node_modules, monkeypatch):  # noqa: F811
    def refuse(*args, **kwargs):
        raise AssertionError(f"npm ran again: {args}")
    monkeypatch.setattr(service.subprocess, "run", refuse)
    assert service.up_to_date()
    assert service.ensure_node_modules() == node_modules


def test_a_directory_without_install_is_not_up_to_date(tmp_path):
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(service.NODE_DIR / name, tmp_path / name)
    assert not service.up_to_date(tmp_path)
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / service.STAMP).write_text("0" * 64)   # another lockfile's
    assert not service.up_to_date(tmp_path)


def test_without_node_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(service.shutil, "which", lambda name: None)
    with pytest.raises(ServiceUnavailable) as excinfo:
        service.ensure_node_modules()
    assert excinfo.value.service == "node"
    assert "apt-get install nodejs" in str(excinfo.value)


@pytest.mark.node
def test_node_script_runs_in_the_interop_directory(node_modules):  # noqa: F811
    with service.node_script("versions.js") as process:
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    versions = json.loads(out)
    assert versions["@socket.io/redis-adapter"] == _version(node_modules,
                                                            "@socket.io/redis-adapter")
