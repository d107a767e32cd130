"""The product contract: environment.yml declares the same dependencies as pyproject.toml."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _name_and_bound(spec: str) -> tuple[str, str]:
    match = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)", spec)
    assert match, spec
    return match.group(1).lower(), match.group(3).split("#")[0].strip()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_name_and_bound(d) for d in project["dependencies"])
    conda = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        item = re.match(r"\s*-\s+([A-Za-z].*)", line)
        if item and not item.group(1).startswith(("pip", "-e")):
            name, bound = _name_and_bound(item.group(1))
            conda[name] = bound
    for name, bound in wanted.items():
        assert name in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[name] == bound, f"{name}: pyproject says {bound!r}, environment.yml {conda[name]!r}"
    assert conda["python"] == project["requires-python"]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
