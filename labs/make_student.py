"""Generate the student version of every lab and chapter, and check that its checks fail.

    python -m labs.make_student            # labs/*.ipynb -> build/labs/*.ipynb,
                                           # notebooks/*.ipynb -> build/notebooks/*.ipynb
    python -m labs.make_student --check    # the same, then run each student notebook

A lab notebook in ``labs/`` is the *solution* version: it is committed executed, and nbval runs it
like the chapters.  In its code cells the solution sits between nbgrader's markers::

    def accept_key(key: str) -> str:
        ### BEGIN SOLUTION
        digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
        return base64.b64encode(digest).decode("ascii")
        ### END SOLUTION

The student version replaces each such region, markers included, by ``raise NotImplementedError()``
at the indentation of the ``### BEGIN SOLUTION`` line, and clears every output and execution
count.  The cells that test the learner's code carry the cell tag ``check``.  ``--check`` executes
each student version (errors allowed) and fails unless *every* check cell ends with an error: a
check that passes without a solution checks nothing.  It also fails for a lab without markers or
without check cells.

The markers are nbgrader's own (a marker line is matched exactly, after stripping whitespace, as
nbgrader does), and the lab notebooks carry nbgrader cell metadata (solution cells, locked graded
check cells with points), so a teacher can put a lab in an nbgrader course's ``source/`` folder and
run ``nbgrader generate_assignment`` and ``nbgrader autograde`` unchanged.

**Chapters** (``notebooks/*.ipynb``) end with predict-then-check questions built the same way: an
answer cell whose value sits between the markers (``Q1_ANSWER = ...`` above them, the teacher's
answer inside), and a ``check`` cell that measures the real value and raises AssertionError when the
answer is wrong.  Their student versions go to ``build/notebooks/`` and ``--check`` treats them like
the labs, with one difference: a chapter without any marker is *skipped* (reported, not an error),
so chapters whose questions have not been converted yet do not break the build.  A chapter that
has markers must also have check cells, exactly like a lab.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import sys
from dataclasses import dataclass

import nbformat
from nbformat import NotebookNode

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
STUB = "raise NotImplementedError()"
CHECK_TAG = "check"

ROOT = pathlib.Path(__file__).resolve().parent.parent
LABS_DIR = ROOT / "labs"
BUILD_DIR = ROOT / "build" / "labs"
CHAPTERS_DIR = ROOT / "notebooks"
CHAPTERS_BUILD_DIR = ROOT / "build" / "notebooks"


class LabError(Exception):
    """A lab notebook that cannot be turned into a proper student version."""


@dataclass
class StudentVersion:
    notebook: NotebookNode
    solution_cells: int  # code cells that had at least one marked region
    check_cells: list[int]  # indices of the cells tagged ``check``


def strip_solutions(source: str) -> tuple[str, int]:
    """Replace each marked solution region of ``source``; return the new source and the count.

    Raises :class:`LabError` for nested, unclosed or stray markers, and for a line that mentions
    a marker without being exactly one (nbgrader would silently keep such a solution).
    """
    out: list[str] = []
    regions = 0
    inside = False
    for number, line in enumerate(source.split("\n"), start=1):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if inside:
                raise LabError(f"line {number}: {BEGIN_SOLUTION} inside another solution region")
            inside = True
            regions += 1
            indent = line[:len(line) - len(line.lstrip())]
            out.append(indent + STUB)
        elif marker == END_SOLUTION:
            if not inside:
                raise LabError(f"line {number}: {END_SOLUTION} without {BEGIN_SOLUTION}")
            inside = False
        elif "BEGIN SOLUTION" in line or "END SOLUTION" in line:
            raise LabError(f"line {number}: malformed marker {marker!r}; "
                           f"write {BEGIN_SOLUTION!r} or {END_SOLUTION!r} alone on the line")
        elif not inside:
            out.append(line)
    if inside:
        raise LabError(f"{BEGIN_SOLUTION} without {END_SOLUTION}")
    return "\n".join(out), regions


def has_markers(notebook: NotebookNode) -> bool:
    """Whether any code cell of ``notebook`` holds a solution marker line."""
    return any(line.strip() in (BEGIN_SOLUTION, END_SOLUTION)
               for cell in notebook.cells if cell.cell_type == "code"
               for line in cell.source.split("\n"))


def student_version(solution: NotebookNode) -> StudentVersion:
    """The student notebook for a solution notebook (which is left unchanged)."""
    nb = copy.deepcopy(solution)
    solution_cells = 0
    check_cells = []
    for index, cell in enumerate(nb.cells):
        if CHECK_TAG in cell.get("metadata", {}).get("tags", []):
            check_cells.append(index)
        if cell.cell_type != "code":
            if BEGIN_SOLUTION in cell.source or END_SOLUTION in cell.source:
                raise LabError(f"cell {index}: solution markers in a {cell.cell_type} cell; "
                               "only code cells are supported")
            continue
        try:
            cell.source, regions = strip_solutions(cell.source)
        except LabError as exc:
            raise LabError(f"cell {index}, {exc}") from None
        if regions:
            solution_cells += 1
            if index in check_cells:
                raise LabError(f"cell {index}: a check cell must not contain a solution")
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)  # nbclient's timing record
    if not solution_cells:
        raise LabError(f"no {BEGIN_SOLUTION} / {END_SOLUTION} markers: "
                       "this is not the solution version of a lab")
    if not check_cells:
        raise LabError(f"no cell tagged {CHECK_TAG!r}: nothing would test the learner's code")
    return StudentVersion(nb, solution_cells, check_cells)


def display_path(path: pathlib.Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def generate(path: pathlib.Path, out_dir: pathlib.Path) -> tuple[pathlib.Path, StudentVersion]:
    """Write the student version of the lab at ``path`` into ``out_dir``."""
    solution = nbformat.read(path, as_version=4)
    try:
        student = student_version(solution)
    except LabError as exc:
        raise LabError(f"{display_path(path)}: {exc}") from None
    nbformat.validate(student.notebook)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    nbformat.write(student.notebook, target)
    return target, student


def execute(path: pathlib.Path, timeout: int) -> NotebookNode:
    """Run a notebook with nbclient in its own folder, letting cells fail."""
    from nbclient import NotebookClient  # only --check needs a kernel
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    # CurveZMQ keys for the kernel's channels (ipykernel warns at every start without them).
    encrypted = Config({"KernelManager": {"transport_encryption": "auto"}})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            record_timing=False, skip_cells_with_tag="skip-execution",
                            resources={"metadata": {"path": str(path.parent)}}, config=encrypted)
    client.execute()
    return nb


def passing_checks(executed: NotebookNode, check_cells: list[int]) -> list[int]:
    """The check cells that produced no error output."""
    return [index for index in check_cells
            if not any(output.output_type == "error" for output in executed.cells[index].outputs)]


def first_line(cell: NotebookNode) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip()]
    return lines[0].strip() if lines else "(empty)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labs.make_student",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("labs", nargs="*", type=pathlib.Path,
                        help="lab solution notebooks (default: labs/*.ipynb, and the chapters)")
    parser.add_argument("--chapter", action="append", default=[], type=pathlib.Path,
                        dest="chapters", metavar="NOTEBOOK",
                        help="a chapter notebook (repeatable; default: notebooks/*.ipynb); "
                             "skipped when it has no solution markers")
    parser.add_argument("--out", type=pathlib.Path, default=BUILD_DIR,
                        help="where to write the labs' student versions (default: build/labs)")
    parser.add_argument("--chapters-out", type=pathlib.Path, default=CHAPTERS_BUILD_DIR,
                        help="where to write the chapters' student versions "
                             "(default: build/notebooks)")
    parser.add_argument("--check", action="store_true",
                        help="execute each student version; fail unless every check cell fails")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per cell for --check")
    args = parser.parse_args(argv)

    if args.labs or args.chapters:
        labs, chapters = args.labs, args.chapters
    else:
        labs = sorted(LABS_DIR.glob("*.ipynb"))
        chapters = sorted(CHAPTERS_DIR.glob("*.ipynb"))
        if not labs:
            print(f"no lab notebooks in {display_path(LABS_DIR)}", file=sys.stderr)
            return 1
    jobs = [(path, args.out, True) for path in labs]
    jobs += [(path, args.chapters_out, False) for path in chapters]
    problems = 0
    for path, out_dir, markers_required in jobs:
        if not markers_required and not has_markers(nbformat.read(path, as_version=4)):
            print(f"{display_path(path)}: no solution markers (no questions to blank yet): skipped")
            continue
        problems += build_one(path, out_dir, args.check, args.timeout)
    return 1 if problems else 0


def build_one(path: pathlib.Path, out_dir: pathlib.Path, check: bool, timeout: int) -> int:
    """Write (and with ``check``, run) one student version; the number of problems found."""
    name = display_path(path)
    try:
        target, student = generate(path, out_dir)
    except (LabError, OSError, nbformat.ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = f"{student.solution_cells} solution cells, {len(student.check_cells)} checks"
    if not check:
        print(f"{name}: {counts} -> {display_path(target)}")
        return 0
    try:
        executed = execute(target, timeout)
    except Exception as exc:  # a timeout or a dead kernel: report it, go on with the others
        print(f"error: {name}: the student version could not be executed: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    passing = passing_checks(executed, student.check_cells)
    if not passing:
        print(f"{name}: {counts}, all fail in the student version")
        return 0
    print(f"{name}: {counts}, {len(passing)} pass in the student version", file=sys.stderr)
    for index in passing:
        cell = executed.cells[index]
        label = f"{index} ({cell.id})" if cell.get("id") else str(index)
        print(f"error: {name}: check cell {label} passes without a solution "
              f"(it must fail until the exercise is solved): "
              f"{first_line(cell)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
