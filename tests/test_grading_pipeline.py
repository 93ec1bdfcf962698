"""Assignment 1 end to end through the real nbgrader: release, autograde, feedback, grades.

Everything runs in a temporary copy of the course folder (nbgrader_config.py and solutions/), never in the
working tree's release/, submitted/ ... One ``course autograde`` call grades a batch of submissions built from
the released notebook: the solution, the untouched student version, plausible but wrong answers (each with its
exact partial score, among them attacks of Part D that do too little damage) and answers that import the reference
implementation, which is not importable in the seal.
Hostile submissions (crashes, loops, bombs, tampering) are in ``test_hostile_submissions.py``.

The fast tests at the end check the notebook's nbgrader metadata, the checks the grader records from it (against
the reference library and the solution), and the check API's local mode; Part D's judge and the thresholds are
tested in ``test_assignment1.py``.
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

HIDDEN_MODULES = ["poisoning.mean_estimation"]
SOLUTION_CELLS = ["part_a_solution", "part_b_solution", "part_c_solution", "part_d_solution"]
STUDENT_FUNCTIONS = ["distance_filter", "filtered_mean", "adaptive_attack", "trimmed_mean", "attack_trimmed_mean"]
TEST_CELLS = {  # grade id -> points
    "test_part_a_visible": 1, "test_part_a_hidden": 3,
    "test_part_b_visible": 1, "test_part_b_hidden": 3,
    "test_part_c_visible": 1, "test_part_c_hidden": 2,
    # Part D is graded by its outcome: the damage of the student's poisons, at least 50% and 80% of the reference's
    "test_part_d_visible": 1, "test_part_d_hidden": 2, "test_part_d_strong_hidden": 2,
}
OUTCOME_CELLS = ["test_part_d_hidden", "test_part_d_strong_hidden"]
PART_OF = {gid: gid.split("_")[2] for gid in TEST_CELLS}  # "a", "b", "c", "d"
WRITTEN_CELLS = {"answer_e1": 2, "answer_e2": 2}
AUTOGRADED_MAX = sum(TEST_CELLS.values())  # 16
MAX_SCORE = AUTOGRADED_MAX + sum(WRITTEN_CELLS.values())  # 20
# the library's function each student function is checked against (Part D: the reference attack whose damage sets
# the thresholds)
REFERENCES = {name: name for name in STUDENT_FUNCTIONS} | {"attack_trimmed_mean": "trimmed_mean_attack"}

# the seal's limits for the batch: a normal student needs a few CPU seconds and well under 1 GB
LIMITS = ["--jobs", "2", "--cell-timeout", "120", "--cpu-seconds", "60", "--memory-mb", "2048", "--timeout", "120"]


# --------------------------------------------------------------------------------------------------
# helpers (the shared ones are in grading_helpers.py)
# --------------------------------------------------------------------------------------------------
def solution_code():
    """The solution of each solution cell, as a student would type it (no markers)."""
    return helpers.solution_code(SOURCE, SOLUTION_CELLS)


def pasted_library_code(names):
    """The library's functions ``names`` pasted into a notebook: their source (with the helpers of their module among
    ``names``), and the imports of the library's shared input checks (``poisoning._validation``, importable in the
    seal)."""
    import ast
    import inspect

    import poisoning.mean_estimation as me

    module = inspect.getsource(me)
    imports = []
    for node in ast.parse(module).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "_validation":
            node.module, node.level = "poisoning._validation", 0
            imports.append(ast.unparse(node))
    own = [name for name in names if getattr(me, name).__module__ == me.__name__]
    return "\n".join(imports) + "\n\n\n" + "\n\n".join(inspect.getsource(getattr(me, name)) for name in own)


def submissions(released_nb):
    """``{student: notebook JSON text}`` for the batch, built from the released notebook."""
    sol = solution_code()

    def student(replacements):
        return helpers.with_cells(released_nb, replacements)

    a, b, c, _ = (sol[g] for g in SOLUTION_CELLS)
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
        "pasted": student({**sol, "part_a_solution": pasted_library_code(["_as_samples", "_as_output",
                                                                           "distance_filter", "filtered_mean"]),
                           "part_c_solution": pasted_library_code(["_as_samples", "_as_output", "trimmed_mean"])}),
        # Part D: Part B's attack reused, every poison just inside the radius along the first axis (the trimmed mean
        # cuts that coordinate, and the others do not move)
        "oneaxis": student({**sol, "part_d_solution": textwrap.dedent("""\
            def attack_trimmed_mean(X_clean, n_poison, trim_fraction, radius):
                return adaptive_attack(X_clean, n_poison, radius)
            """)}),
        # Part D: one point at the full radius, spread evenly over the coordinates: half the reference's damage, not
        # 80% of it where the coordinates' spreads differ
        "evenspread": student({**sol, "part_d_solution": textwrap.dedent("""\
            def attack_trimmed_mean(X_clean, n_poison, trim_fraction, radius):
                d = np.shape(X_clean)[1]
                return adaptive_attack(X_clean, n_poison, radius, direction=np.ones(d), margin=0.0)
            """)}),
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
                """),
            "part_d_solution": "from poisoning.mean_estimation import trimmed_mean_attack as attack_trimmed_mean\n"}),
    }


EXPECTED = {  # autograded score, and a word the status must contain
    "solution": (16, "graded"),
    "blank": (0, "graded"),
    "wrongcenter": (12, "graded"),
    "farattack": (12, "graded"),
    "onesided": (13, "graded"),
    "onedonly": (14, "graded"),
    "pasted": (16, "graded"),
    "oneaxis": (12, "graded"),
    "evenspread": (14, "graded"),
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
    # the references, the hidden inputs, Part D's cases, reference damages, thresholds and judges: nowhere
    text = helpers.check_release(released, ASSIGNMENT, SOURCE, SOLUTION_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                                 HIDDEN_MODULES, min_secret_lines=60, fragments=(
                                     "check_cases", "def cases_", "31415", "27182", "16180", "11235",
                                     "hidden_cases_d", "CASES_D", "REFERENCE_DAMAGE_D", "0.867438", "HALF_D", "MOST_D",
                                     "damage_d", "outcome_d", "trimmed_mean_attack", "room / np.linalg.norm(room)"))
    # the hidden-test cells are still there (graded), with the visible comment only; the thresholds are in the text
    student_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    for gid in ("test_part_a_hidden", "test_part_b_hidden", "test_part_c_hidden", *OUTCOME_CELLS):
        assert "check" not in source_of(cell_by_id(student_nb, gid))
    assert "at least **50%**" in text and "at least **80%**" in text


@pytest.mark.slow
def test_nbgrader_validate_passes_the_solution_and_fails_the_student_version(released):
    source_result, failed_code, failed_written = helpers.validate_source_and_release(released, ASSIGNMENT)
    assert source_result == {}
    assert len(failed_code) == 4  # the visible tests; the hidden ones are not in the student version
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
    # Part D graded by its outcome: a weak attack keeps the visible point, a middling one also the first hidden test
    _, cells = gradebook_scores(root, "oneaxis")
    assert [cells[gid] for gid in TEST_CELLS if PART_OF[gid] == "d"] == [1, 0, 0]
    _, cells = gradebook_scores(root, "evenspread")
    assert [cells[gid] for gid in TEST_CELLS if PART_OF[gid] == "d"] == [1, 2, 0]
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
        assert f"Score: {score:.1f} / {MAX_SCORE:.1f}" in html
        assert "def cases_a" not in html and "31415" not in html  # no hidden test code in the feedback
        assert "REFERENCE_DAMAGE_D" not in html and "11235" not in html
    assert "checks failed" in (root / "feedback" / "wrongcenter" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()

    result = run_cli("grades", "--output", "out.csv", cwd=root)
    assert result.returncode == 0, result.stderr
    with open(root / "out.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["student"] for r in rows] == sorted([*EXPECTED, "carol"])
    for row in rows:
        assert row["assignment"] == ASSIGNMENT
        assert float(row["max_score"]) == MAX_SCORE
        expected = EXPECTED.get(row["student"], (0, ""))[0]
        assert float(row["autograded_score"]) == expected and float(row["score"]) == expected


@pytest.mark.slow
def test_similarity_report_ranks_copies(batch):
    root, _, _ = batch
    result = run_cli("similarity", ASSIGNMENT, "--top", "100", cwd=root)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()[1:] if line.strip().endswith(".py")
             or " ~ " in line]
    pairs = {(parts[1], parts[3]): float(parts[0].rstrip("%")) for parts in lines if len(parts) == 4}
    # the pasted library code is found in the library's own file, more of it than of anybody else's code
    library = {student: score for (student, other), score in pairs.items()
               if other == "library:poisoning/mean_estimation.py"}
    assert library.get("pasted", 0) > 50 and library["pasted"] == max(library.values()), result.stdout
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
    assert gradebook_scores(root, "wrongcenter")[0] == 12


# --------------------------------------------------------------------------------------------------
# fast: the source notebook
# --------------------------------------------------------------------------------------------------
def test_source_notebook_is_a_valid_nbgrader_assignment():
    helpers.check_source_notebook(SOURCE, HIDDEN_MODULES, TEST_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                                  outcome_cells=OUTCOME_CELLS)


def test_solution_signatures_match_the_reference():
    import inspect

    import poisoning.mean_estimation as me

    namespace = {"np": np}
    for code in solution_code().values():
        exec(code, namespace)
    for name, reference in REFERENCES.items():
        assert inspect.signature(namespace[name]) == inspect.signature(getattr(me, reference)), name


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
    assert calls["test_part_d_visible"] == 2 and calls["test_part_d_hidden"] == calls["test_part_d_strong_hidden"] == 7
    helpers.check_plan_inputs(plan, TEST_CELLS)  # the seal gets the inputs only


def test_the_reference_and_the_solution_pass_every_recorded_check(plan, student_functions):
    """The visible expectations agree with the library, and the source notebook's solution passes everything."""
    import poisoning.mean_estimation as me
    from grading.checks import run_student

    for gid, groups in plan.cells.items():
        for group in groups:
            for (args, kwargs), judge in zip(group.calls, group.judges):
                for fn in (getattr(me, REFERENCES[group.function]), student_functions[group.function]):
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
