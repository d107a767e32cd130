"""labs.make_student: the student version of a lab, built from an in-memory notebook."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labs.make_student import LabError, generate, main, strip_solutions, student_version

SOLUTION_CELL = '''\
def accept_key(key):
    """RFC 6455 §4.2.2."""
    ### BEGIN SOLUTION
    digest = hashlib.sha1((key + GUID).encode()).digest()
    return base64.b64encode(digest).decode()
    ### END SOLUTION


class Parser:
    def feed(self, data):
        ### BEGIN SOLUTION
        return []
        ### END SOLUTION
'''

STUDENT_CELL = '''\
def accept_key(key):
    """RFC 6455 §4.2.2."""
    raise NotImplementedError()


class Parser:
    def feed(self, data):
        raise NotImplementedError()
'''


def lab(*cells):
    return new_notebook(cells=list(cells))


def executed(source, *, tags=()):
    cell = new_code_cell(source, execution_count=3, metadata={"tags": list(tags)})
    cell.outputs = [new_output("stream", name="stdout", text="ok\n")]
    cell.metadata["execution"] = {"shell.execute_reply": "2024-01-01T00:00:00Z"}
    return cell


def test_regions_replaced_with_their_indentation():
    assert strip_solutions(SOLUTION_CELL) == (STUDENT_CELL, 2)


def test_top_level_region():
    source = "x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\nprint(x)"
    assert strip_solutions(source) == ("x = 1\nraise NotImplementedError()\nprint(x)", 1)


def test_tab_indentation_kept():
    source = "def f():\n\t### BEGIN SOLUTION\n\treturn 1\n\t### END SOLUTION"
    assert strip_solutions(source) == ("def f():\n\traise NotImplementedError()", 1)


def test_student_version_clears_outputs_and_counts():
    solution = lab(new_markdown_cell("# Lab"),
                   executed(SOLUTION_CELL),
                   executed("assert accept_key('x')", tags=["check"]),
                   executed("print('given code')"))
    student = student_version(solution)
    cells = student.notebook.cells
    assert cells[1].source == STUDENT_CELL
    assert cells[2].source == "assert accept_key('x')"  # checks are kept as they are
    assert cells[3].source == "print('given code')"
    for cell in cells[1:]:
        assert cell.outputs == []
        assert cell.execution_count is None
        assert "execution" not in cell.metadata
    assert cells[2].metadata["tags"] == ["check"]
    assert (student.solution_cells, student.check_cells) == (1, [2])
    # the solution notebook itself is untouched
    assert "### BEGIN SOLUTION" in solution.cells[1].source
    assert solution.cells[1].outputs and solution.cells[1].execution_count == 3


def test_notebook_without_markers_rejected():
    solution = lab(executed("def f():\n    return 1"), executed("assert f() == 1", tags=["check"]))
    with pytest.raises(LabError, match="no ### BEGIN SOLUTION"):
        student_version(solution)


def test_notebook_without_checks_rejected():
    with pytest.raises(LabError, match="no cell tagged 'check'"):
        student_version(lab(executed(SOLUTION_CELL)))


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "without ### END SOLUTION"),
    ("x = 1\n### END SOLUTION", "without ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ("### BEGIN SOLUTION here\nx = 1\n### END SOLUTION", "malformed marker"),
])
def test_broken_markers_rejected(source, message):
    with pytest.raises(LabError, match=message):
        strip_solutions(source)


def test_generate_writes_student_notebook(tmp_path):
    source = tmp_path / "labs" / "99-tiny.ipynb"
    source.parent.mkdir()
    nbformat.write(lab(executed(SOLUTION_CELL), executed("Parser().feed(b'')", tags=["check"])),
                   source)
    target, student = generate(source, tmp_path / "build")
    assert target == tmp_path / "build" / "99-tiny.ipynb"
    written = nbformat.read(target, as_version=4)
    assert written.cells[0].source == STUDENT_CELL
    assert written.cells[0].outputs == []


def test_main_fails_on_a_lab_without_markers(tmp_path, capsys):
    source = tmp_path / "00-no-markers.ipynb"
    nbformat.write(lab(executed("x = 1"), executed("assert x", tags=["check"])), source)
    assert main([str(source), "--out", str(tmp_path / "build")]) == 1
    assert "no ### BEGIN SOLUTION" in capsys.readouterr().err


def test_check_reports_a_check_that_passes_without_the_solution(tmp_path, capsys):
    """--check runs the student version in a kernel: a check that does not fail is an error."""
    source = tmp_path / "98-weak.ipynb"
    solution = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    nbformat.write(lab(executed(solution),
                       executed("assert f() == 1", tags=["check"]),
                       executed("assert 1 + 1 == 2", tags=["check"])),
                   source)
    assert main([str(source), "--out", str(tmp_path / "build"), "--check"]) == 1
    err = capsys.readouterr().err
    assert "check cell 2" in err and "passes without a solution" in err
    assert "check cell 1" not in err


# --- chapters: predict-then-check questions ------------------------------------------------

ANSWER_CELL = "Q1_ANSWER = ...   # bytes\n### BEGIN SOLUTION\nQ1_ANSWER = 8\n### END SOLUTION"
CHECK_CELL = ("measured = len(b'12345678')\n"
              "assert Q1_ANSWER is not ..., 'wrong: no answer yet'\n"
              "assert Q1_ANSWER == measured, f'wrong: {measured}'\n"
              "print('right')")


def test_has_markers():
    from labs.make_student import has_markers
    assert has_markers(lab(executed(ANSWER_CELL)))
    assert not has_markers(lab(executed("x = 1"), new_markdown_cell("### BEGIN SOLUTION")))


def test_chapter_answer_cell_keeps_the_blank_and_drops_the_answer():
    student = student_version(lab(executed(ANSWER_CELL), executed(CHECK_CELL, tags=["check"])))
    assert student.notebook.cells[0].source == "Q1_ANSWER = ...   # bytes\nraise NotImplementedError()"


def test_chapter_without_markers_is_skipped_not_an_error(tmp_path, capsys):
    chapter = tmp_path / "01-handshake.ipynb"
    nbformat.write(lab(executed("x = 1"), executed("assert x == 1")), chapter)
    out = tmp_path / "build"
    assert main(["--chapter", str(chapter), "--chapters-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no solution markers" in printed and "skipped" in printed
    assert not (out / "01-handshake.ipynb").exists()


def test_chapter_with_markers_but_no_check_is_an_error(tmp_path, capsys):
    chapter = tmp_path / "02-frames.ipynb"
    nbformat.write(lab(executed(ANSWER_CELL)), chapter)
    assert main(["--chapter", str(chapter), "--chapters-out", str(tmp_path / "build")]) == 1
    assert "no cell tagged 'check'" in capsys.readouterr().err


def test_chapter_student_version_written_to_chapters_out(tmp_path, capsys):
    chapter = tmp_path / "02-frames.ipynb"
    nbformat.write(lab(executed(ANSWER_CELL), executed(CHECK_CELL, tags=["check"])), chapter)
    out = tmp_path / "build" / "notebooks"
    assert main(["--chapter", str(chapter), "--chapters-out", str(out)]) == 0
    written = nbformat.read(out / "02-frames.ipynb", as_version=4)
    assert "Q1_ANSWER = 8" not in written.cells[0].source
    assert written.cells[1].outputs == []


def test_check_runs_chapters_and_accepts_checks_that_fail_when_blank(tmp_path, capsys):
    """The blank answer (Ellipsis, then the stub's raise) makes the check fail: accepted."""
    chapter = tmp_path / "02-frames.ipynb"
    nbformat.write(lab(executed(ANSWER_CELL), executed(CHECK_CELL, tags=["check"])), chapter)
    assert main(["--chapter", str(chapter), "--chapters-out", str(tmp_path / "b"), "--check"]) == 0
    assert "all fail in the student version" in capsys.readouterr().out


def test_check_reports_a_chapter_check_that_passes_when_blank(tmp_path, capsys):
    """A check that does not look at the answer passes without it: reported."""
    chapter = tmp_path / "03-conversation.ipynb"
    nbformat.write(lab(executed(ANSWER_CELL), executed("print('right')", tags=["check"])), chapter)
    assert main(["--chapter", str(chapter), "--chapters-out", str(tmp_path / "b"), "--check"]) == 1
    assert "passes without a solution" in capsys.readouterr().err
