"""``course leaderboard``: rank the students of an assignment by what the grader measured in one graded test.

Assignment 4's Part C is graded by its outcome: the student's ``my_poisons`` hands poisons back, and the grader
trains the defended victim with them and measures its test error (the judge of the hidden test cell
``test_part_c_hidden``). The leaderboard lists every student with an autograded notebook of the assignment, ranked
by that test error (highest first), in an HTML table (rank, student, test error, passed) written to
``.grading/leaderboard/ASSIGNMENT.html``, and prints its top rows. An assignment has a leaderboard when it has an
entry in :data:`BOARDS`.

Where the value comes from, and why it can be trusted
-----------------------------------------------------
Nothing here runs student code, and nothing here reads what the student's kernel printed:

* the test error is measured by the judge of the hidden test cell **in the grader's process**, outside the seal
  (:meth:`grading.verdicts.Plan.verdicts`), on the plain data that the student's function returned
  (:mod:`grading.wire`) and on the grader's own copy of the data set. The judge's text is the verdict: a passing
  judge returns ``"test error 10.50% under the loss defence (threshold 4.00%)"``, which the grader appends to
  ``"all 1 check pass; "``; a failing one raises ``"test error 1.83% under the loss defence, below the threshold
  4.00%"``, which the grader prefixes with the call (``"my_poisons(array of shape (400, 784), ...): "``);
* :class:`grading.pipeline.ApplyVerdicts`, in the grader's process, then **replaces every output of every graded
  test cell** of the executed notebook with that verdict (a line on standard output when the cell passes, a
  ``GradingFailure`` error when it fails) before nbgrader writes the notebook into ``autograded/`` and scores it.
  What the kernel printed in that cell is gone, and the seal cannot reach the course folder at all;
* this module reads only that one output of that one graded cell, identified by its nbgrader grade id, and
  accepts it only when it has exactly the grader's wording (:attr:`Board.passed`, :attr:`Board.failed`). Student
  text can reach a verdict only after the grader's own words (``"...: raised <type>: <message>"`` or ``"...: no
  result (<error>)"``), where these patterns never look, so an exception message cannot forge a value;
* the pass or fail of the cell is taken from the **gradebook** (the points nbgrader's ``SaveAutoGrades`` recorded
  from the same verdict); a notebook whose verdict disagrees with the gradebook (edited after grading, or an older
  run) is listed without a value.

A student whose check failed before the measurement (an exception, no result, poisons of the wrong shape or
outside the box) is listed last, without a value.
"""

from __future__ import annotations

import glob
import html
import os
import re
from dataclasses import dataclass

from . import gradebook
from .coursedir import CourseError

__all__ = ["Board", "BOARDS", "Entry", "entries", "ranked", "write_html", "leaderboard", "run"]

#: the error name of a failed verdict in the autograded notebook (grading.pipeline.FAILURE)
FAILURE = "GradingFailure"
_NUMBER = r"(?P<{}>\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class Board:
    """Which graded test cell of which notebook holds the measured value, and how the grader words it."""

    notebook: str  # the notebook's name, without .ipynb
    cell: str  # the grade id of the graded test cell whose judge measures the value
    function: str  # the student's function that the cell checks
    measure: str  # what the value is, e.g. "test error"; a percentage
    passed: str  # regular expression of the cell's output when it passes (full match; groups value, threshold)
    failed: str  # regular expression of the error value when the measurement failed the threshold (full match)
    higher_is_better: bool = True
    title: str = ""


def _loss_defence_board():
    value, threshold = _NUMBER.format("value"), _NUMBER.format("threshold")
    cell, function = "test_part_c_hidden", "my_poisons"
    return Board(
        notebook="assignment4", cell=cell, function=function, measure="test error",
        # "test_part_c_hidden: all 1 check pass; test error 10.50% under the loss defence (threshold 4.00%)
        #  (checked by the grader)": the note the judge returns, after the grader's words
        passed=(rf"{re.escape(cell)}: all \d+ checks? pass; test error {value}% under the loss defence "
                rf"\(threshold {threshold}%\) \(checked by the grader\)\n?"),
        # "my_poisons(array of shape (400, 784), ..., 20): test error 1.83% under the loss defence, below the
        #  threshold 4.00%": the call the grader describes (no colon in it), then the judge's own message
        failed=(rf"{re.escape(function)}\([^:\n]*\): test error {value}% under the loss defence, "
                rf"below the threshold {threshold}%"),
        title="Assignment 4, Part C: the victim's test error under the loss defence, as the grader measured it",
    )


#: the assignments that have a leaderboard
BOARDS = {"assignment4": _loss_defence_board()}


@dataclass
class Entry:
    """One student on the leaderboard."""

    student: str
    value: float | None  # the measured value (a percentage), None when the grader measured none
    passed: bool  # whether the cell earned its points, from the gradebook
    threshold: float | None = None  # the threshold the grader reported with the value
    note: str = ""  # why there is no value
    rank: int | None = None  # set by ranked(); None without a value


def _board(assignment):
    board = BOARDS.get(assignment)
    if board is None:
        known = ", ".join(sorted(BOARDS)) or "none"
        raise CourseError(f"assignment '{assignment}' has no leaderboard (assignments with one: {known})")
    return board


def _one_line(text, width=120):
    text = "".join(ch if ch.isprintable() else " " for ch in " ".join(str(text).split()))
    return text if len(text) <= width else text[: width - 3] + "..."


def _text(value):
    return "".join(value) if isinstance(value, list) else value if isinstance(value, str) else ""


def read_verdict(path, board):
    """``(passed, value, threshold, note)`` from the grader's verdict in one autograded notebook.

    ``passed`` is what the verdict says (``None`` when the notebook or the cell cannot be read); ``value`` is
    ``None`` unless the verdict is exactly in the grader's wording.
    """
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as error:  # a damaged file: listed, without a value
        return None, None, None, f"the autograded notebook cannot be read ({type(error).__name__})"
    cells = [cell for cell in nb.cells if cell.get("cell_type") == "code"
             and cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == board.cell
             and cell["metadata"]["nbgrader"].get("grade") and not cell["metadata"]["nbgrader"].get("solution")]
    if len(cells) != 1:
        return None, None, None, f"the notebook has {len(cells)} graded cells {board.cell}"
    outputs = cells[0].get("outputs", [])
    if len(outputs) != 1:
        return None, None, None, f"the cell {board.cell} has no verdict of the grader"
    output = outputs[0]
    if output.get("output_type") == "stream" and output.get("name") == "stdout":
        match = re.fullmatch(board.passed, _text(output.get("text")))
        if match:
            return True, float(match["value"]), float(match["threshold"]), ""
        return True, None, None, "passed, but the verdict reports no measured value"
    if output.get("output_type") == "error" and output.get("ename") == FAILURE:
        message = _text(output.get("evalue"))
        match = re.fullmatch(board.failed, message)
        if match:
            return False, float(match["value"]), float(match["threshold"]), ""
        prefix = re.match(rf"{re.escape(board.function)}\([^:\n]*\): ", message)  # the grader's description of the call
        return False, None, None, "not measured: " + _one_line(message[prefix.end():] if prefix else message)
    return None, None, None, f"the cell {board.cell} has no verdict of the grader"


def entries(course, assignment):
    """One :class:`Entry` per student with an autograded notebook of ``assignment`` (unranked, by student)."""
    board = _board(assignment)
    notebooks = course.released_notebooks(assignment)
    if board.notebook not in notebooks:
        raise CourseError(f"assignment '{assignment}' has no notebook {board.notebook}.ipynb")
    pattern = os.path.join(course.path("autograded", "*", assignment), board.notebook + ".ipynb")
    paths = {os.path.basename(os.path.dirname(os.path.dirname(path))): path for path in glob.glob(pattern)}
    if not paths:
        raise CourseError(f"no autograded submission of '{assignment}' yet: run `course autograde` first")
    scores = gradebook.cell_scores(course, assignment, board.notebook, board.cell, sorted(paths))
    found = []
    for student in sorted(paths):
        score, max_score = scores.get(student, (0.0, 0.0))
        passed = student in scores and max_score > 0 and score >= max_score
        said, value, threshold, note = read_verdict(paths[student], board)
        if student not in scores:
            value, note = None, "not in the gradebook"
        elif said is not None and said != passed:
            value, note = None, "the notebook's verdict disagrees with the gradebook"
        found.append(Entry(student, value, passed, threshold if value is not None else None, note))
    return found


def ranked(found, higher_is_better=True):
    """The entries best first, with ranks (equal values share a rank); those without a value last, unranked."""
    with_value = sorted((e for e in found if e.value is not None),
                        key=lambda e: (-e.value if higher_is_better else e.value, e.student))
    rank, previous = 0, None
    for position, entry in enumerate(with_value, start=1):
        if entry.value != previous:
            rank, previous = position, entry.value
        entry.rank = rank
    without = sorted((e for e in found if e.value is None), key=lambda e: (not e.passed, e.student))
    for entry in without:
        entry.rank = None
    return with_value + without


def _value_text(entry):
    return "-" if entry.value is None else f"{entry.value:.2f}%"


def write_html(rows, path, assignment, board):
    """The leaderboard as a self-contained HTML page (every text escaped)."""
    thresholds = sorted({e.threshold for e in rows if e.threshold is not None})
    caption = board.title or f"{assignment}: {board.measure}"
    if len(thresholds) == 1:
        caption += f"; threshold {thresholds[0]:.2f}%"
    body = []
    for entry in rows:
        body.append("<tr><td>{}</td><td>{}</td><td class=num>{}</td><td>{}</td><td>{}</td></tr>".format(
            "-" if entry.rank is None else entry.rank, html.escape(entry.student), html.escape(_value_text(entry)),
            "yes" if entry.passed else "no", html.escape(entry.note)))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Leaderboard: {html.escape(assignment)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
caption {{ text-align: left; margin-bottom: 0.5em; }}
</style>
</head>
<body>
<h1>Leaderboard: {html.escape(assignment)}</h1>
<table>
<caption>{html.escape(caption)}. Measured by the grader, outside the students' notebooks; read from the grader's
verdicts in autograded/.</caption>
<thead><tr><th>rank</th><th>student</th><th>{html.escape(board.measure)}</th><th>passed</th><th>note</th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
</body>
</html>
"""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path


def leaderboard(course, assignment, output=None):
    """``(ranked entries, path of the HTML table)``; the table goes to ``output`` (default
    ``.grading/leaderboard/ASSIGNMENT.html`` in the course folder)."""
    board = _board(assignment)
    rows = ranked(entries(course, assignment), board.higher_is_better)
    path = output or os.path.join(course.root, ".grading", "leaderboard", f"{assignment}.html")
    if output and not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise CourseError(f"cannot write {output}: folder {os.path.dirname(os.path.abspath(output))} does not exist")
    write_html(rows, path, assignment, board)
    return rows, path


def run(course, assignment, output=None, top=10, echo=print):
    """What ``course leaderboard`` does: write the table and print its ``top`` rows. Returns the exit status."""
    board = _board(assignment)
    rows, path = leaderboard(course, assignment, output)
    width = max([len("student")] + [len(e.student) for e in rows[:top]])
    echo(f"{'rank':>4}  {'student':<{width}}  {board.measure:>10}  passed")
    for entry in rows[:top]:
        rank = "-" if entry.rank is None else str(entry.rank)
        echo(f"{rank:>4}  {entry.student:<{width}}  {_value_text(entry):>10}  {'yes' if entry.passed else 'no'}")
    passed = sum(e.passed for e in rows)
    try:
        shown = os.path.relpath(path)
    except ValueError:
        shown = path
    echo(f"{len(rows)} student{'s' if len(rows) != 1 else ''} ({passed} passed); the table: {shown}")
    return 0
