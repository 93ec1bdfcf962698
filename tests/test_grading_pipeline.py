"""Assignment 1 end to end through the real nbgrader: release, autograde, feedback, grades.

Everything runs in a temporary copy of the course folder (nbgrader_config.py and solutions/), never in the
working tree's release/, submitted/ ... One ``course autograde`` call grades a batch of submissions built from
the released notebook: the solution, the untouched student version, plausible but wrong answers (each with its
exact partial score) and answers that import the reference implementation, which is not importable in the seal.
Hostile submissions (crashes, loops, bombs, tampering) are in ``test_hostile_submissions.py``.

The fast tests at the end check the notebook's nbgrader metadata, the checks the grader records from it (against
the reference library and the solution), and the check API's local mode.
"""

import csv
import json
import shutil
import textwrap

import grading_helpers as helpers
import numpy as np
import pytest
from grading_helpers import ROOT, cell_by_id, edited, read_nb, run_cli, source_of, summary_rows

ASSIGNMENT = "assignment1"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

SOLUTION_CELLS = ["part_a_solution", "part_b_solution", "part_c_solution"]
TEST_CELLS = {  # grade id -> points
    "test_part_a_visible": 1, "test_part_a_hidden": 3,
    "test_part_b_visible": 1, "test_part_b_hidden": 3,
    "test_part_c_visible": 1, "test_part_c_hidden": 2,
}
PART_OF = {gid: gid.split("_")[2] for gid in TEST_CELLS}  # "a", "b", "c"
WRITTEN_CELLS = {"answer_d1": 2, "answer_d2": 2}
AUTOGRADED_MAX = sum(TEST_CELLS.values())  # 11

# the seal's limits for the batch: a normal student needs a few CPU seconds and well under 1 GB
LIMITS = ["--jobs", "2", "--cell-timeout", "120", "--cpu-seconds", "60", "--memory-mb", "2048", "--timeout", "120"]


# --------------------------------------------------------------------------------------------------
# helpers (the shared ones are in grading_helpers.py)
# --------------------------------------------------------------------------------------------------
def solution_code():
    """The solution of each solution cell, as a student would type it (no markers)."""
    return helpers.solution_code(SOURCE, SOLUTION_CELLS)


def submissions(released_nb):
    """``{student: notebook JSON text}`` for the batch, built from the released notebook."""
    sol = solution_code()

    def student(replacements):
        return helpers.with_cells(released_nb, replacements)

    a, b, c = (sol[g] for g in SOLUTION_CELLS)
    import inspect

    import poisoning.mean_estimation as me

    return {
        "solution": student(sol),
        "blank": student({}),
        # plausible but wrong: the filter centred on the mean, which the far points drag away
        "wrongcenter": student({**sol, "part_a_solution": edited(a, "np.median(points, axis=0)",
                                                                  "points.mean(axis=0)")}),
        # an attack that ignores the filter and puts the poisons far away
        "farattack": student({**sol, "part_b_solution": edited(b, "(1.0 - margin) * radius * u",
                                                                "10 * radius * u")}),
        # a trimmed mean that trims the top only
        "onesided": student({**sol, "part_c_solution": edited(c, "[k : n - k]", "[: n - k]")}),
        # a trimmed mean for 1-D data only: passes the visible tests, fails the hidden 2-D ones
        "onedonly": student({**sol, "part_c_solution": textwrap.dedent("""\
            def trimmed_mean(X, trim_fraction=0.1):
                values = np.sort(np.asarray(X, dtype=float).ravel())
                k = int(trim_fraction * len(values))
                return float(values[k : len(values) - k].mean())
            """)}),
        # the library's source pasted into the notebook: it runs, and the similarity report shows where it is from
        "pasted": student({**sol, "part_c_solution": "\n\n".join(
            inspect.getsource(getattr(me, name)) for name in ("_as_samples", "_as_output", "trimmed_mean"))}),
        # the reference, aliased or called
        "alias": student({
            "part_a_solution": "from poisoning.mean_estimation import distance_filter, filtered_mean\n",
            "part_b_solution": textwrap.dedent("""\
                import poisoning.mean_estimation as me

                def adaptive_attack(X_clean, n_poison, radius, direction=None, margin=0.01):
                    return me.adaptive_attack(X_clean, n_poison, radius, direction, margin)
                """),
            "part_c_solution": textwrap.dedent("""\
                def trimmed_mean(X, trim_fraction=0.1):
                    from poisoning.mean_estimation import trimmed_mean as reference
                    return reference(X, trim_fraction)
                """)}),
    }


EXPECTED = {  # autograded score, and a word the status must contain
    "solution": (11, "graded"),
    "blank": (0, "graded"),
    "wrongcenter": (7, "graded"),
    "farattack": (7, "graded"),
    "onesided": (8, "graded"),
    "onedonly": (9, "graded"),
    "pasted": (11, "graded"),
    "alias": (0, "graded"),
}


def gradebook_scores(root, student):
    """``(code score, {grade id: auto score})`` of one student, from the course's gradebook."""
    return helpers.gradebook_scores(root, ASSIGNMENT, student)


# --------------------------------------------------------------------------------------------------
# the pipeline (slow: one release, one autograde of the whole batch)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return helpers.released_course(tmp_path_factory.mktemp("pipeline"), ASSIGNMENT)


@pytest.fixture(scope="module")
def batch(released):
    """One `course autograde` of the whole batch, given as a .zip with a sub-folder, plus two bad files."""
    released_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    files = {f"batch/{student}_{ASSIGNMENT}.ipynb": text for student, text in submissions(released_nb).items()}
    files[f"batch/carol_{ASSIGNMENT}.ipynb"] = "{ this is not json"
    files["batch/notes.txt"] = "not a notebook"
    return helpers.autograde_zip(released, ASSIGNMENT, files, *LIMITS)


@pytest.mark.slow
def test_release_contains_no_solution_and_no_hidden_test(released):
    student_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    helpers.check_student_version(read_nb(SOURCE), student_nb, SOLUTION_CELLS, WRITTEN_CELLS,
                                  ["distance_filter", "filtered_mean", "adaptive_attack", "trimmed_mean"],
                                  min_secret_lines=40)
    # the hidden-test cells are still there (graded), with the visible comment only
    for gid in ("test_part_a_hidden", "test_part_b_hidden", "test_part_c_hidden"):
        assert "check_cases" not in source_of(cell_by_id(student_nb, gid))


@pytest.mark.slow
def test_nbgrader_validate_passes_the_solution_and_fails_the_student_version(released):
    source_result, failed_code, failed_written = helpers.validate_source_and_release(released, ASSIGNMENT)
    assert source_result == {}
    assert len(failed_code) == 3  # the visible tests; the hidden ones are not in the student version
    assert all("NotImplementedError" in cell["raw_error"] for cell in failed_code)
    assert failed_written == 2  # the unanswered written questions


@pytest.mark.slow
def test_batch_scores_in_the_gradebook(batch):
    root, result, _ = batch
    for student, (score, _) in EXPECTED.items():
        got, cells = gradebook_scores(root, student)
        assert got == score, f"{student}: {got} != {score}\n{result.stdout}"
    # per part: the wrong answers lose exactly their part
    _, cells = gradebook_scores(root, "wrongcenter")
    assert {gid: cells[gid] for gid in TEST_CELLS if PART_OF[gid] == "a"} == {"test_part_a_visible": 0,
                                                                                "test_part_a_hidden": 0}
    _, cells = gradebook_scores(root, "onedonly")
    assert cells["test_part_c_visible"] == 1 and cells["test_part_c_hidden"] == 0
    _, cells = gradebook_scores(root, "alias")
    assert all(cells[gid] == 0 for gid in TEST_CELLS)
    _, cells = gradebook_scores(root, "solution")
    assert all(cells[gid] == points for gid, points in TEST_CELLS.items())


@pytest.mark.slow
def test_batch_summary_warnings_and_exit_status(batch):
    root, result, _ = batch
    assert result.returncode == 1, result.stdout + result.stderr  # two bad files
    rows = summary_rows(result.stdout)
    for student, (score, word) in EXPECTED.items():
        assert rows[student][0] == score and rows[student][1] == AUTOGRADED_MAX, (student, rows.get(student))
        assert word in rows[student][3], (student, rows[student])
    assert rows["carol"][3].startswith("invalid") and rows["carol"][2] is None
    assert f"{len(EXPECTED)} of {len(EXPECTED) + 1} students graded" in result.stdout
    problems = helpers.summary_problems(result.stdout)
    assert problems["solution"] == "" and problems["blank"].startswith("test_part_a_visible: 5 of 5 checks failed")
    assert "distance_filter(array of shape (5,), 3.0): no result (NameError" in problems["alias"]
    # why: the reference module is not importable in the seal (the student sees it in the feedback)
    alias = read_nb(root / "autograded" / "alias" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    errors = [out for out in cell_by_id(alias, "part_a_solution")["outputs"] if out["output_type"] == "error"]
    assert errors and "poisoning.mean_estimation is not available while assignment1 is graded" in errors[0]["evalue"]
    assert "seal: each submission sealed by bubblewrap" in result.stdout
    stderr = result.stderr
    assert "Traceback" not in stderr
    assert f"course: warning: skipped batch/carol_{ASSIGNMENT}.ipynb: not a valid notebook" in stderr
    assert "course: warning: skipped batch/notes.txt: not a notebook" in stderr
    assert "course: error: 2 files in SUBMISSIONS skipped" in stderr
    assert "autograding assignment1" in stderr  # the progress bar


@pytest.mark.slow
def test_batch_collects_and_logs(batch):
    root, result, seconds = batch
    # collected by zip_collect; an autograded notebook and a log for everyone
    for student in EXPECTED:
        assert (root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
        assert (root / ".grading" / "logs" / ASSIGNMENT / f"{student}.log").is_file()
        assert (root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    assert not (root / "submitted" / "carol").exists()
    print(f"autograde of {len(EXPECTED)} students: {seconds:.0f} s")


@pytest.mark.slow
def test_verdicts_are_the_only_outputs_of_the_test_cells(batch):
    """Each graded test cell of an autograded notebook shows the grader's verdict, nothing the kernel printed."""
    root, _, _ = batch
    nb = read_nb(root / "autograded" / "wrongcenter" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    for gid in TEST_CELLS:
        outputs = cell_by_id(nb, gid)["outputs"]
        assert len(outputs) == 1, (gid, outputs)
        if PART_OF[gid] == "a":
            assert outputs[0]["output_type"] == "error" and outputs[0]["ename"] == "GradingFailure"
            assert "checks failed; the first: distance_filter(" in outputs[0]["evalue"]
        else:
            assert outputs[0]["output_type"] == "stream" and "checked by the grader" in "".join(outputs[0]["text"])


@pytest.mark.slow
def test_feedback_and_grades(batch):
    root, _, _ = batch
    result = run_cli("feedback", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stderr
    graded = list(EXPECTED)
    for student in graded:
        html = (root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        score = EXPECTED[student][0]
        assert f"Score: {score:.1f} / 15.0" in html
        assert "def cases_a" not in html and "31415" not in html  # no hidden test code in the feedback
    assert "checks failed" in (root / "feedback" / "wrongcenter" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()

    result = run_cli("grades", "--output", "out.csv", cwd=root)
    assert result.returncode == 0, result.stderr
    with open(root / "out.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["student"] for r in rows] == sorted([*EXPECTED, "carol"])
    for row in rows:
        assert row["assignment"] == ASSIGNMENT
        assert float(row["max_score"]) == AUTOGRADED_MAX + sum(WRITTEN_CELLS.values())
        expected = EXPECTED.get(row["student"], (0, ""))[0]
        assert float(row["autograded_score"]) == expected and float(row["score"]) == expected


@pytest.mark.slow
def test_similarity_report_ranks_copies(batch):
    root, _, _ = batch
    result = run_cli("similarity", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()[1:] if line.strip().endswith(".py")
             or " ~ " in line]
    pairs = {(parts[1], parts[3]): float(parts[0].rstrip("%")) for parts in lines if len(parts) == 4}
    # the pasted library code is found in the library's own file
    assert pairs.get(("pasted", "library:poisoning/mean_estimation.py"), 0) > 50, result.stdout
    # near-copies of one solution rank high with each other, the untouched student version with nobody
    assert pairs.get(("solution", "wrongcenter"), 0) > 80, result.stdout
    assert not any("blank" in pair for pair in pairs)
    html = (root / ".grading" / "similarity" / f"{ASSIGNMENT}.html").read_text()
    assert "pasted" in html and "library:poisoning/mean_estimation.py" in html


@pytest.mark.slow
def test_regrading_one_student_keeps_the_others(batch, tmp_path):
    """A second batch replaces only its own students' scores (and the merge keeps the gradebook intact)."""
    root = tmp_path / "course"
    shutil.copytree(batch[0], root)  # leave the batch's course as it is for the other tests
    sol = solution_code()
    nb = read_nb(root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    for gid, code in sol.items():
        cell_by_id(nb, gid)["source"] = code
    folder = tmp_path / "resubmitted"
    folder.mkdir()
    (folder / f"blank_{ASSIGNMENT}.ipynb").write_text(json.dumps(nb))
    result = run_cli("autograde", ASSIGNMENT, str(folder), "--jobs", "1", "--no-progress", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert gradebook_scores(root, "blank")[0] == AUTOGRADED_MAX
    assert gradebook_scores(root, "wrongcenter")[0] == 7


# --------------------------------------------------------------------------------------------------
# fast: the source notebook
# --------------------------------------------------------------------------------------------------
def test_source_notebook_is_a_valid_nbgrader_assignment():
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator

    nb = nbformat.read(SOURCE, as_version=4)
    nbformat.validate(nb)
    MetadataValidator().validate_nb(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert not any(cell.get("outputs") or cell.get("execution_count") for cell in nb.cells
                   if cell.cell_type == "code")
    points = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            points[meta["grade_id"]] = meta["points"]
        if meta.get("solution") and cell.cell_type == "code":
            assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") >= 1
        if meta.get("grade") and cell.cell_type == "code":
            assert meta["locked"] and not meta["solution"]
            hidden = "### BEGIN HIDDEN TESTS" in cell.source
            assert hidden == meta["grade_id"].endswith("_hidden")
            if hidden:
                assert "check_cases(" in cell.source
            else:
                assert "check(" in cell.source
    assert points == {**TEST_CELLS, **WRITTEN_CELLS}
    for gid in WRITTEN_CELLS:
        cell = cell_by_id(json.loads(SOURCE.read_text()), gid)
        assert cell["cell_type"] == "markdown" and cell["metadata"]["nbgrader"]["solution"]


def test_solution_signatures_match_the_reference():
    import inspect

    import poisoning.mean_estimation as me

    namespace = {"np": np}
    for code in solution_code().values():
        exec(code, namespace)
    for name in ("distance_filter", "filtered_mean", "adaptive_attack", "trimmed_mean"):
        assert inspect.signature(namespace[name]) == inspect.signature(getattr(me, name)), name


# --------------------------------------------------------------------------------------------------
# fast: the checks the grader records, and the check API's local mode
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan():
    import nbformat

    from grading.verdicts import record_plan

    return record_plan(nbformat.read(SOURCE, as_version=4))


@pytest.fixture
def student_functions():
    namespace = {"np": np, "__name__": "__main__"}
    for code in solution_code().values():
        exec(compile(code, "<student cell>", "exec"), namespace)
    return namespace


def test_plan_has_every_test_cell_and_its_points(plan):
    assert plan.points == {gid: float(points) for gid, points in TEST_CELLS.items()}
    calls = {gid: sum(len(group.calls) for group in groups) for gid, groups in plan.cells.items()}
    assert calls["test_part_a_visible"] == 5 and calls["test_part_b_visible"] == 4
    assert calls["test_part_a_hidden"] == 10 + 11 and calls["test_part_c_hidden"] == 6
    helpers.check_plan_inputs(plan, TEST_CELLS)  # the seal gets the inputs only


def test_the_reference_and_the_solution_pass_every_recorded_check(plan, student_functions):
    """The visible expectations agree with the library, and the source notebook's solution passes everything."""
    import poisoning.mean_estimation as me
    from grading.checks import run_student

    for gid, groups in plan.cells.items():
        for group in groups:
            for (args, kwargs), judge in zip(group.calls, group.judges):
                for fn in (getattr(me, group.function), student_functions[group.function]):
                    outcome = run_student(fn, args, kwargs)
                    assert judge.problem(outcome, args, kwargs) is None, (gid, group.function, args, kwargs)


def test_verdicts_from_records_and_from_their_absence(plan, student_functions):
    """Right outputs pass; a wrong, missing, forged or unreadable output fails its cell, and only its cell."""
    from grading.wire import encode

    records = helpers.seal_records(plan, student_functions)
    verdicts = plan.verdicts(records)
    assert all(passed for passed, _ in verdicts.values()), verdicts

    def cell_a_visible_changed(change):
        changed = [dict(r) for r in records]
        first = next(r for r in changed if r["cell"] == "test_part_a_visible")
        change(first, changed)
        return plan.verdicts(changed)

    wrong = cell_a_visible_changed(lambda r, _: r.update(value=encode(np.zeros(5, dtype=bool))))
    assert not wrong["test_part_a_visible"][0] and wrong["test_part_b_visible"][0]
    assert "1 of 5 checks failed; the first: distance_filter(array of shape (5,), 3.0): 4 of 5 entries" in \
        wrong["test_part_a_visible"][1]
    missing = cell_a_visible_changed(lambda r, changed: changed.remove(r))
    assert "no result (the test cell did not run this check)" in missing["test_part_a_visible"][1]
    forged = cell_a_visible_changed(lambda r, _: r.update(value={"t": "ndarray", "dtype": "object", "shape": [5],
                                                                 "b64": ""}))
    assert "UnreadableResult" in forged["test_part_a_visible"][1]
    as_list = cell_a_visible_changed(lambda r, _: r.update(value=encode([True, True, True, True, False])))
    assert "expected a boolean numpy array" in as_list["test_part_a_visible"][1]
    assert not plan.verdicts("garbage")["test_part_c_hidden"][0]
    assert not plan.verdicts([{"cell": "test_part_c_hidden", "group": True, "call": 0, "value": {"t": "none"}}])[
        "test_part_c_hidden"][0]


def test_local_mode_passes_right_answers_and_explains_wrong_ones(student_functions):
    from grading.checks import check, check_cases

    X = np.array([0.0, 1.0, 2.0, 3.0, 100.0])
    check(student_functions["distance_filter"], X, 3.0, expect=np.array([True, True, True, True, False]))
    check(student_functions["filtered_mean"], X, 0.5, center=50.0, raises=ValueError)
    check_cases(student_functions["trimmed_mean"], lambda: [((X, 0.2), {}), ((X[:, None], 0.0), {})],
                reference="poisoning.mean_estimation.trimmed_mean")
    namespace = dict(student_functions)
    exec(edited(solution_code()["part_a_solution"], "np.median(points, axis=0)", "points.mean(axis=0)"), namespace)
    with pytest.raises(AssertionError, match=r"^distance_filter\(array of shape \(5,\), 3.0\): 4 of 5 entries"):
        check(namespace["distance_filter"], X, 3.0, expect=np.array([True, True, True, True, False]))
    with pytest.raises(AssertionError, match="should raise ValueError"):
        check(lambda X, radius, center=None: 0.0, X, 0.5, center=50.0, raises=ValueError)
    with pytest.raises(AssertionError, match="comes from the `poisoning.mean_estimation` module"):
        import poisoning.mean_estimation as me

        check(me.trimmed_mean, X, 0.2, expect=3.0)
    with pytest.raises(TypeError, match="exactly one of"):
        check(student_functions["trimmed_mean"], X, expect=1.0, raises=ValueError)


def test_recording_rejects_test_cells_that_call_student_code():
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from grading.verdicts import PlanError, record_plan

    meta = {"nbgrader": {"grade": True, "solution": False, "locked": True, "grade_id": "t", "points": 1}}
    solution = {"nbgrader": {"grade": False, "solution": True, "locked": False, "grade_id": "s"}}
    nb = new_notebook(cells=[new_code_cell("def f(x):\n    return x", metadata=solution),
                             new_code_cell("from grading.checks import check\nassert f(1) == 1", metadata=meta)])
    with pytest.raises(PlanError, match="calls `f` directly"):
        record_plan(nbformat.from_dict(nb))
    nb.cells[1].source = "x = 1"
    with pytest.raises(PlanError, match="without any check"):
        record_plan(nbformat.from_dict(nb))


def test_a_judge_can_report_what_it_measured():
    """A judge that returns a string on success puts it in the verdict (e.g. the damage a student's poisons do,
    measured by the grader), and a failing judge's message is the verdict."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from grading.verdicts import record_plan
    from grading.wire import encode

    meta = {"nbgrader": {"grade": True, "solution": False, "locked": True, "grade_id": "t", "points": 2}}
    solution = {"nbgrader": {"grade": False, "solution": True, "locked": False, "grade_id": "s"}}
    judge = "def at_least_three(out):\n    assert out >= 3, f'{out} is below 3'\n    return f'measured {out}'\n"
    nb = new_notebook(cells=[new_code_cell("def f(x):\n    return x", metadata=solution),
                             new_code_cell("from grading.checks import check\n" + judge
                                           + "check(f, 5, judge=at_least_three)", metadata=meta)])
    plan = record_plan(nbformat.from_dict(nb))
    record = {"cell": "t", "group": 0, "call": 0}
    assert plan.verdicts([{**record, "value": encode(4)}])["t"] == (True, "all 1 check pass; measured 4")
    assert plan.verdicts([{**record, "value": encode(2)}])["t"] == (False, "f(5): 2 is below 3")


def test_a_tuple_of_arrays_is_compared_item_by_item():
    from grading.checks import compare

    X, y = np.arange(6.0).reshape(3, 2), np.array([0, 1, 1])
    assert compare((X.copy(), y.copy()), (X, y), 1e-9, 0.0) is None
    assert compare([X.copy(), y.copy()], (X, y), 1e-9, 0.0) is None  # a list is fine too
    assert compare((X + 1e-3, y), (X, y), 1e-9, 0.0).startswith("item 0 of the tuple: values differ")
    assert compare((X, y[:2]), (X, y), 1e-9, 0.0) == "item 1 of the tuple: expected shape (3,), got shape (2,)"
    assert compare(X, (X, y), 1e-9, 0.0) == "expected a tuple of 2 items, got array of shape (3, 2)"
    assert compare((X, y, y), (X, y), 1e-9, 0.0).startswith("expected a tuple of 2 items")
    # a tuple of plain numbers is still one array of numbers
    assert compare(np.array([1.0, 2.0]), (1.0, 2.0), 1e-9, 0.0) is None
