"""Assignment 4 (the influence attack) end to end through the real nbgrader, its checks, and ``course leaderboard``.

Everything runs in a temporary copy of the course folder (nbgrader_config.py and solutions/). One
``course autograde`` call grades a small batch built from the released notebook: the solution, the untouched
student version, plausible but wrong answers, each with its exact partial score (a projection onto the sphere only,
which also costs Part B since the step calls it; a step without the projection; random label flips as Part C's
attack, which pass the visible test but stay far below the hidden threshold) and answers that alias or call the
reference modules (:mod:`poisoning.feasible_set`, :mod:`poisoning.influence_attack`, :mod:`poisoning.influence`),
which earn nothing because those modules are not importable in the seal. ``course leaderboard assignment4`` then
ranks the batch by the test error the grader measured for Part C.

The fast tests check the notebook's nbgrader metadata, the solutions against the library, the checks the grader
records from the source notebook (the visible expectations agree with the library, the solution passes every
check, the plausible-wrong answers get their partial scores), the judges' messages, that the leaderboard's
patterns accept exactly the grader's wording, and the documented threshold of Part C against a new measurement.
"""

import inspect
import json
import re
import textwrap
import time
import warnings

import grading_helpers as helpers
import numpy as np
import pytest
from grading_helpers import ROOT, cell_by_id, edited, read_nb, run_cli, source_of, summary_rows

ASSIGNMENT = "assignment4"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
HIDDEN_MODULES = ["poisoning.feasible_set", "poisoning.influence_attack", "poisoning.influence"]

FUNCTIONS = {  # solution cell -> the functions a student writes in it
    "part_a_solution": ["project_onto_feasible_set"],
    "part_b_solution": ["attack_step"],
    "part_c_solution": ["my_poisons"],
}
SOLUTION_CELLS = list(FUNCTIONS)
STUDENT_FUNCTIONS = [name for names in FUNCTIONS.values() for name in names]
TEST_CELLS = {  # grade id -> points
    "test_part_a_visible": 1, "test_part_a_hidden": 3,
    "test_part_b_visible": 1, "test_part_b_hidden": 2,
    "test_part_c_visible": 1, "test_part_c_hidden": 4,
}
WRITTEN_CELLS = {"answer_d": 3}
AUTOGRADED_MAX = sum(TEST_CELLS.values())  # 12
THRESHOLD = 4.0  # percent: the hidden threshold of Part C (see the comment in the hidden test cell)

# two students at a time (the machine may have only 2 cores); generous limits: a correct notebook needs about 15 s
# (Part C's attack runs twice, on the visible and on the hidden split) and well under 1 GB in the seal
LIMITS = ["--jobs", "2", "--cell-timeout", "120", "--cpu-seconds", "120", "--memory-mb", "4096", "--timeout", "300",
          "--no-progress"]


def solution_code():
    """The solution of each solution cell, as a student would type it (no markers)."""
    return helpers.solution_code(SOURCE, SOLUTION_CELLS)


ALIAS = {  # every part through the reference modules: imported at the top of the cell, or inside the function
    "part_a_solution": textwrap.dedent("""\
        from poisoning.feasible_set import SphereSlabFeasibleSet


        def project_onto_feasible_set(X, y, centroids, radii, directions, half_widths, box=None):
            feasible = SphereSlabFeasibleSet(box=box)
            feasible.classes_, feasible.n_features_in_ = np.array([-1, 1]), np.shape(X)[1]
            feasible.centroids_, feasible.radii_ = np.asarray(centroids), np.asarray(radii)
            feasible.directions_, feasible.half_widths_ = np.asarray(directions), np.asarray(half_widths)
            return feasible.project(X, y)
        """),
    "part_b_solution": textwrap.dedent("""\
        def attack_step(X_poison, y_poison, gradient, step_size, centroids, radii, directions, half_widths, box=None):
            import poisoning.feasible_set as feasible_set

            feasible = feasible_set.SphereSlabFeasibleSet(box=box)
            feasible.classes_, feasible.n_features_in_ = np.array([-1, 1]), np.shape(X_poison)[1]
            feasible.centroids_, feasible.radii_ = np.asarray(centroids), np.asarray(radii)
            feasible.directions_, feasible.half_widths_ = np.asarray(directions), np.asarray(half_widths)
            largest = np.max(np.linalg.norm(gradient, axis=1))
            return feasible.project(X_poison + step_size / largest * np.asarray(gradient), y_poison)
        """),
    "part_c_solution": textwrap.dedent("""\
        def my_poisons(X_clean, y_clean, X_test, y_test, n_poison):
            from poisoning.influence_attack import InfluenceAttack

            attack = InfluenceAttack(epsilon=n_poison / len(X_clean), n_iter=10, step_size=0.5, copies=True,
                                     removal_fraction=0.0, shrink=1.0, random_state=0)
            attack.fit(X_clean, y_clean, X_test, y_test)
            return attack.X_poison_, attack.y_poison_
        """),
}

LABEL_FLIPS = textwrap.dedent("""\
    def my_poisons(X_clean, y_clean, X_test, y_test, n_poison):
        \"\"\"Random label flips: copies of random training images with the other label.\"\"\"
        chosen = np.random.default_rng(0).choice(len(X_clean), size=n_poison, replace=False)
        return np.asarray(X_clean, dtype=float)[chosen], -np.asarray(y_clean)[chosen]
    """)


def submission_code():
    """``{student: {solution cell: code}}`` for the batch (cells not given keep the released stubs)."""
    sol = solution_code()
    a, b, c = (sol[g] for g in SOLUTION_CELLS)
    return {
        "solution": sol,
        "blank": {},
        # the projection onto the sphere only (no slab, no box): Part A fails, and Part B, which calls it; its Part C
        # is the model answer started from another image, which passes with another test error
        "sphereonly": {**sol, "part_a_solution": edited(
            a, "    projections = [sphere, slab]\n    if box is not None:\n"
               "        projections.append(lambda Z: np.clip(Z, box[0], box[1]))\n", "    projections = [sphere]\n"),
            "part_c_solution": edited(c, "np.random.default_rng(0)", "np.random.default_rng(1)")},
        # the gradient step without the projection back onto the feasible set
        "noprojection": {**sol, "part_b_solution": edited(
            b, "return project_onto_feasible_set(moved, y_poison, centroids, radii, directions, half_widths, box)",
            "return moved")},
        # random label flips as Part C's attack: valid poisons (the visible test passes), little damage
        "labelflips": {**sol, "part_c_solution": LABEL_FLIPS},
        # the reference, aliased or called, in every part
        "alias": ALIAS,
    }


def extra_code():
    """More plausible-wrong answers, checked against the grader's verdicts only (not in the slow batch)."""
    sol = solution_code()
    a, b, c = (sol[g] for g in SOLUTION_CELLS)
    return {
        # one pass of the three projections instead of Dykstra's sweeps: feasible, but not the closest point
        "onepass": {**sol, "part_a_solution": edited(a, "for _ in range(1000):", "for _ in range(1):")},
        # every poison moved by step_size along its own gradient (each row normalised by its own norm)
        "rownorm": {**sol, "part_b_solution": edited(
            b, "moved = X_poison + (step_size / largest) * gradient",
            "moved = X_poison + step_size * gradient / np.linalg.norm(gradient, axis=1, keepdims=True)")},
        # copies of one label-flipped image, not moved: a cluster, but in no harmful place
        "copies": {**sol, "part_c_solution": textwrap.dedent("""\
            def my_poisons(X_clean, y_clean, X_test, y_test, n_poison):
                start = np.random.default_rng(3).integers(len(X_clean))
                return np.repeat(np.asarray(X_clean, dtype=float)[start][None, :], n_poison, axis=0), \\
                    np.full(n_poison, -np.asarray(y_clean)[start])
            """)},
        # label flips pushed out of the pixel box: not valid poisons at all
        "outsidebox": {**sol, "part_c_solution": edited(
            LABEL_FLIPS, "return np.asarray(X_clean, dtype=float)[chosen]",
            "return 2.0 * np.asarray(X_clean, dtype=float)[chosen]")},
    }


def submissions(released_nb):
    """``{student: notebook JSON text}`` for the batch, built from the released notebook."""
    return {student: helpers.with_cells(released_nb, code) for student, code in submission_code().items()}


PARTS = {"a": ["test_part_a_visible", "test_part_a_hidden"], "b": ["test_part_b_visible", "test_part_b_hidden"],
         "c": ["test_part_c_visible", "test_part_c_hidden"]}
FAILED_CELLS = {  # student -> the test cells that must earn nothing (all others earn their points)
    "solution": [],
    "blank": list(TEST_CELLS),
    "sphereonly": PARTS["a"] + PARTS["b"],
    "noprojection": PARTS["b"],
    "labelflips": ["test_part_c_hidden"],
    "alias": list(TEST_CELLS),  # the reference modules are not importable in the seal
}
EXTRA_FAILED_CELLS = {
    "onepass": PARTS["a"] + ["test_part_b_hidden"],  # the visible step is projected right by one pass
    "rownorm": PARTS["b"],
    "copies": ["test_part_c_hidden"],
    "outsidebox": PARTS["c"],
}
EXPECTED = {student: AUTOGRADED_MAX - sum(TEST_CELLS[g] for g in cells) for student, cells in FAILED_CELLS.items()}


def test_expected_scores():
    assert EXPECTED == {"solution": 12, "blank": 0, "sphereonly": 5, "noprojection": 9, "labelflips": 8, "alias": 0}


# --------------------------------------------------------------------------------------------------
# the pipeline (slow: one release, one autograde of the batch, the leaderboard)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return helpers.released_course(tmp_path_factory.mktemp("assignment4"), ASSIGNMENT)


@pytest.fixture(scope="module")
def batch(released):
    """One `course autograde` of the whole batch, given as a .zip."""
    released_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    files = {f"{student}_{ASSIGNMENT}.ipynb": text for student, text in submissions(released_nb).items()}
    return helpers.autograde_zip(released, ASSIGNMENT, files, *LIMITS)


def outputs(root, student, gid):
    return helpers.cell_outputs(root, ASSIGNMENT, student, gid)


@pytest.mark.slow
def test_release_contains_no_solution_and_no_hidden_test(released):
    # the references, the hidden inputs, the threshold and how it was measured, the model answers: nowhere
    helpers.check_release(released, ASSIGNMENT, SOURCE, SOLUTION_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                          HIDDEN_MODULES, min_secret_lines=60, fragments=(
                              "check_cases", "SphereSlabFeasibleSet(", "_reference_", "def cases_", "90210", "16180",
                              "random_state=3", "THRESHOLD_C", "damage_under_the_loss_defence", "7.67%", "10.50%",
                              "feasible_and_closest", "np.clip(Z, box[0], box[1])", "theta_all",
                              "threadpool_limits(1):\n", "**feasible set** $\\mathcal F$"))


@pytest.mark.slow
def test_nbgrader_validate_passes_the_solution_and_fails_the_student_version(released):
    helpers.check_validate(released, ASSIGNMENT, n_visible=3, n_written=1)


@pytest.mark.slow
def test_leaderboard_refuses_what_it_cannot_rank(tmp_path):
    root = helpers.make_course(tmp_path)
    result = run_cli("leaderboard", "assignment2", cwd=root)
    assert result.returncode == 1 and "assignment 'assignment2' has no leaderboard (assignments with one: " \
                                      "assignment4)" in result.stderr, result.stderr
    result = run_cli("leaderboard", ASSIGNMENT, cwd=root)
    assert result.returncode == 1 and "is not released yet" in result.stderr, result.stderr
    assert run_cli("release", ASSIGNMENT, cwd=root).returncode == 0
    result = run_cli("leaderboard", ASSIGNMENT, cwd=root)
    assert result.returncode == 1 and "no autograded submission of 'assignment4' yet" in result.stderr, result.stderr
    assert not (root / ".grading" / "leaderboard").exists()


@pytest.mark.slow
def test_batch_scores_in_the_gradebook(batch):
    helpers.check_batch_scores(batch, ASSIGNMENT, FAILED_CELLS, TEST_CELLS)


@pytest.mark.slow
def test_batch_summary_and_verdicts(batch):
    root, result, _ = batch
    assert result.returncode == 0, result.stdout + result.stderr
    rows = summary_rows(result.stdout)
    for student, score in EXPECTED.items():
        assert rows[student][:2] == (score, AUTOGRADED_MAX), (student, rows.get(student))
        assert rows[student][3] == "graded", (student, rows[student])
    assert f"{len(EXPECTED)} of {len(EXPECTED)} students graded" in result.stdout
    assert "the written answers, 3 points, are graded by hand" in result.stdout
    assert f"hidden from the seals: {', '.join(sorted(HIDDEN_MODULES))}" in result.stdout
    assert "Traceback" not in result.stderr

    # every graded test cell shows the grader's verdict as its only output
    for student in EXPECTED:
        nb = read_nb(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        for gid in TEST_CELLS:
            cell_outputs = cell_by_id(nb, gid)["outputs"]
            assert len(cell_outputs) == 1, (student, gid, cell_outputs)
            if gid in FAILED_CELLS[student]:
                assert cell_outputs[0]["output_type"] == "error" and cell_outputs[0]["ename"] == "GradingFailure"
            else:
                assert cell_outputs[0]["output_type"] == "stream", (student, gid, cell_outputs)
                assert "checked by the grader" in source_of({"source": cell_outputs[0]["text"]}), (student, gid)

    # a failed test says which call failed and why, in one line
    assert "checks failed; the first: project_onto_feasible_set(array of shape (2, 2)" in outputs(
        root, "sphereonly", "test_part_a_visible")
    assert "the first: attack_step(array of shape (1, 2), array of shape (1,), array of shape (1, 2), 1.0" in outputs(
        root, "noprojection", "test_part_b_visible")
    assert re.search(r"my_poisons\(array of shape \(400, 784\), array of shape \(400,\), array of shape \(600, 784\), "
                     r"array of shape \(600,\), 20\): test error \d\.\d\d% under the loss defence, below the threshold "
                     r"4\.00%", outputs(root, "labelflips", "test_part_c_hidden"))
    assert "all 12 checks pass" in outputs(root, "solution", "test_part_a_hidden")
    # the grader's measurement of a passing Part C is in its verdict
    assert re.search(r"test_part_c_hidden: all 1 check pass; test error \d+\.\d\d% under the loss defence "
                     r"\(threshold 4\.00%\) \(checked by the grader\)", outputs(root, "solution", "test_part_c_hidden"))
    assert "raised NotImplementedError" in outputs(root, "blank", "test_part_a_visible")

    # the alias: the reference modules cannot be imported in the seal, at the top of a cell or inside a function
    message = "poisoning.feasible_set is not available while assignment4 is graded"
    assert message in outputs(root, "alias", "part_a_solution")
    assert "no result (NameError: name 'project_onto_feasible_set' is not defined" in outputs(
        root, "alias", "test_part_a_visible")
    assert f"raised ImportError: {message}" in outputs(root, "alias", "test_part_b_hidden")
    assert "raised ImportError: poisoning.influence_attack is not available while assignment4 is graded" in outputs(
        root, "alias", "test_part_c_hidden")
    # the ungraded demo says why it does not run, instead of a traceback
    for student in ("solution", "alias"):
        nb = read_nb(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        demo = next(cell for cell in nb["cells"] if "label_flip_poisons(X_train" in source_of(cell))
        assert [o["output_type"] for o in demo["outputs"]] == ["stream"], demo["outputs"]
        assert source_of({"source": demo["outputs"][0]["text"]}) == (
            "the demo needs poisoning.influence_attack, which is not available while the notebook is graded\n")


def measured_errors(root):
    """``{student: test error in percent}`` read straight from the grader's Part C verdicts (None: not measured)."""
    found = {}
    for student in EXPECTED:
        text = outputs(root, student, "test_part_c_hidden")
        match = re.search(r"test error (\d+\.\d\d)% under the loss defence", text)
        found[student] = float(match[1]) if match and "raised" not in text else None
    return found


@pytest.mark.slow
def test_leaderboard_ranks_the_batch(batch, solution_error, label_flip_error):
    root, _, _ = batch
    result = run_cli("leaderboard", ASSIGNMENT, "--top", "4", cwd=root)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    errors = measured_errors(root)
    # the values the grader measured: the solution's (also its copy in noprojection) as measured here, the label
    # flips' as measured here; the sphereonly attack another; nothing for the blank and alias notebooks
    assert errors["solution"] == errors["noprojection"] == pytest.approx(solution_error, abs=0.34)
    assert errors["labelflips"] == pytest.approx(label_flip_error, abs=0.34) and errors["labelflips"] < THRESHOLD
    assert errors["sphereonly"] >= THRESHOLD and errors["blank"] is None and errors["alias"] is None
    # the order: highest test error first, ties by name (and sharing a rank); the unmeasured last
    measured = sorted((s for s in errors if errors[s] is not None), key=lambda s: (-errors[s], s))
    order = measured + ["alias", "blank"]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["rank", "student", "test", "error", "passed"]
    printed = [line.split() for line in lines[1:5]]
    assert [row[1] for row in printed] == order[:4]
    ranks = {}
    for position, student in enumerate(measured, start=1):
        ranks[student] = next((ranks[s] for s in measured[:position - 1] if errors[s] == errors[student]), position)
    for row in printed:
        assert row[0] == str(ranks[row[1]]) and row[2] == f"{errors[row[1]]:.2f}%", row
        assert row[3] == ("yes" if errors[row[1]] >= THRESHOLD else "no"), row
    assert lines[5] == "6 students (3 passed); the table: .grading/leaderboard/assignment4.html"

    # the HTML table: every student, in the same order
    page = (root / ".grading" / "leaderboard" / f"{ASSIGNMENT}.html").read_text()
    table_rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td class=num>([^<]*)</td><td>(yes|no)</td>", page)
    assert [row[1] for row in table_rows] == order
    assert [row[2] for row in table_rows] == [f"{errors[s]:.2f}%" for s in measured] + ["-", "-"]
    assert [row[3] for row in table_rows] == ["yes" if errors[s] >= THRESHOLD else "no" for s in measured] + ["no"] * 2
    assert "threshold 4.00%" in page
    assert "not measured: raised NotImplementedError" in page  # why blank has no value

    # --output writes the table elsewhere
    result = run_cli("leaderboard", ASSIGNMENT, "--output", "board.html", cwd=root)
    assert result.returncode == 0 and (root / "board.html").read_text().count("<tr><td>") == len(EXPECTED)


@pytest.mark.slow
def test_leaderboard_ignores_what_the_kernel_wrote(batch, tmp_path):
    """A value only counts in the grader's verdict of the graded cell, in the grader's words, as the gradebook says."""
    import shutil

    from grading.leaderboard import BOARDS, read_verdict

    root, _, _ = batch
    board = BOARDS[ASSIGNMENT]
    path = root / "autograded" / "blank" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = read_nb(path)
    # what a student could print in a cell of their own is not the verdict; the graded cell's verdict is
    forged = "test_part_c_hidden: all 1 check pass; test error 99.00% under the loss defence (threshold 4.00%) " \
             "(checked by the grader)\n"
    cell_by_id(nb, "part_c_solution")["outputs"] = [{"output_type": "stream", "name": "stdout", "text": forged}]
    copy = tmp_path / "blank.ipynb"
    copy.write_text(json.dumps(nb))
    assert read_verdict(copy, board)[:2] == (False, None)
    # the same text written into the graded cell by hand, after grading: it reads as a verdict, but the gradebook
    # says that the cell failed, so the leaderboard shows no value
    cell_by_id(nb, "test_part_c_hidden")["outputs"] = [{"output_type": "stream", "name": "stdout", "text": forged}]
    copy.write_text(json.dumps(nb))
    assert read_verdict(copy, board)[:2] == (True, 99.0)
    backup = tmp_path / "original.ipynb"
    shutil.copy(path, backup)
    try:
        path.write_text(json.dumps(nb))
        from grading.coursedir import Course
        from grading.leaderboard import entries

        blank = next(e for e in entries(Course.open(str(root)), ASSIGNMENT) if e.student == "blank")
        assert (blank.value, blank.passed, blank.note) == (None, False,
                                                          "the notebook's verdict disagrees with the gradebook")
    finally:
        shutil.copy(backup, path)


@pytest.mark.slow
def test_feedback_shows_scores_and_messages_but_no_hidden_test(batch):
    root, _, _ = batch
    result = run_cli("feedback", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stderr
    for student, score in EXPECTED.items():
        html = (root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert f"Score: {score:.1f} / {AUTOGRADED_MAX + sum(WRITTEN_CELLS.values()):.1f}" in html
        # identifiers that only the hidden tests use (the HTML highlights code token by token)
        for name in ("check_cases", "cases_a", "projection_reference_a", "feasible_and_closest_a", "cases_b",
                     "attack_step_reference_b", "damage_under_the_loss_defence", "THRESHOLD_C"):
            assert name not in html, (student, name)
    html = (root / "feedback" / "labelflips" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "under the loss defence, below the threshold 4.00%" in html


# --------------------------------------------------------------------------------------------------
# fast: the source notebook
# --------------------------------------------------------------------------------------------------


def test_source_notebook_is_a_valid_nbgrader_assignment():
    helpers.check_source_notebook(SOURCE, HIDDEN_MODULES, TEST_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                                  outcome_cells=["test_part_c_hidden"])
    # the book prints no projection and no update code: Parts A and B cannot be answered by copying the chapter
    chapter = (ROOT / "chapters" / "07_influence_attack.md").read_text()
    for gid in ("part_a_solution", "part_b_solution"):
        for line in solution_code()[gid].splitlines():
            if len(line.strip()) > 25 and not line.strip().startswith(("from ", "import ")):
                assert line.strip() not in chapter, line


@pytest.fixture(scope="module")
def student_functions():
    namespace = {"__name__": "__main__"}
    exec("import numpy as np\n", namespace)
    for code in solution_code().values():
        exec(compile(code, "<student cell>", "exec"), namespace)
    return namespace


def test_solution_signatures(student_functions):
    signatures = {name: str(inspect.signature(student_functions[name])) for name in STUDENT_FUNCTIONS}
    assert signatures == {
        "project_onto_feasible_set": "(X, y, centroids, radii, directions, half_widths, box=None)",
        "attack_step": "(X_poison, y_poison, gradient, step_size, centroids, radii, directions, half_widths, box=None)",
        "my_poisons": "(X_clean, y_clean, X_test, y_test, n_poison)",
    }


def digits_attack_state(seed, k=6, shrink=0.9):
    """A feasible set fitted on 8 x 8 digits (1 vs 7), label-flipped poisons in it, and their real gradient."""
    from poisoning.data import load_digits
    from poisoning.feasible_set import SphereSlabFeasibleSet
    from poisoning.influence import SmoothHingeModel, input_gradient_of_test_loss

    X, y = load_digits([1, 7])
    y = np.where(y == 7, 1, -1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    train, test = order[:200], order[200:]
    feasible = SphereSlabFeasibleSet(0.05, shrink, (0.0, 1.0)).fit(X[train], y[train])
    start = rng.choice(train, k, replace=False)
    y_poison = -y[start]
    X_poison = feasible.project(X[start], y_poison)
    X_train, y_train = np.vstack([X[train], X_poison]), np.concatenate([y[train], y_poison])
    model = SmoothHingeModel(l2=0.01, temperature=0.001).fit(X_train, y_train)
    gradient = input_gradient_of_test_loss(model, X_train, y_train, X[test], y[test],
                                           indices=np.arange(len(train), len(train) + k))
    return feasible, X_poison, y_poison, gradient


def params_of(feasible):
    return feasible.centroids_, feasible.radii_, feasible.directions_, feasible.half_widths_


@pytest.mark.parametrize("seed", [0, 1])
def test_solutions_agree_with_the_library(student_functions, seed):
    """The projection is the library's (and no farther than SLSQP's answer); the step is InfluenceAttack's."""
    from scipy.optimize import minimize

    f = student_functions
    feasible, X_poison, y_poison, gradient = digits_attack_state(seed)
    far = np.clip(X_poison + 0.8 * np.random.default_rng(seed).normal(size=X_poison.shape), -0.5, 1.5)
    projected = f["project_onto_feasible_set"](far, y_poison, *params_of(feasible), box=(0.0, 1.0))
    np.testing.assert_allclose(projected, feasible.project(far, y_poison), atol=1e-9)
    assert feasible.contains(projected, y_poison, atol=1e-8).all()
    for x, label, p in zip(far[:2], y_poison[:2], projected[:2]):  # a constrained solver agrees
        row = int(label > 0)
        c, r, u, w = (a[row] for a in params_of(feasible))
        constraints = [{"type": "ineq", "fun": lambda z: r**2 - np.sum((z - c) ** 2)},
                       {"type": "ineq", "fun": lambda z: w - (z - c) @ u},
                       {"type": "ineq", "fun": lambda z: w + (z - c) @ u}]
        best = minimize(lambda z: np.sum((z - x) ** 2), c, jac=lambda z: 2 * (z - x), constraints=constraints,
                        bounds=[(0.0, 1.0)] * len(x), method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        assert np.linalg.norm(p - x) <= np.linalg.norm(best.x - x) + 1e-6
    # one step of the solution is the update of InfluenceAttack.fit
    step = f["attack_step"](X_poison, y_poison, gradient, 0.5, *params_of(feasible), box=(0.0, 1.0))
    largest = np.max(np.linalg.norm(gradient, axis=1))
    np.testing.assert_allclose(step, feasible.project(X_poison + 0.5 / largest * gradient, y_poison), atol=1e-9)
    moved = np.linalg.norm(step - X_poison, axis=1)
    assert moved.max() <= 0.5 + 1e-9 and np.all(moved > 0)


def test_one_step_of_the_library_attack_is_the_solutions_step(student_functions):
    """InfluenceAttack with n_iter=1 on digits: its poisons after the step are the solution's attack_step."""
    from poisoning.data import load_digits
    from poisoning.influence import input_gradient_of_test_loss
    from poisoning.influence_attack import InfluenceAttack, smooth_hinge_test_error

    X, y = load_digits([1, 7])
    y = np.where(y == 7, 1, -1)
    X_train, y_train, X_test, y_test = X[:200], y[:200], X[200:], y[200:]
    attack = InfluenceAttack(epsilon=0.03, n_iter=1, step_size=2.0, random_state=0).fit(X_train, y_train,
                                                                                        X_test, y_test)
    # the attack's starting poisons and gradient, recomputed as fit() does
    feasible = attack.feasible_set_
    start = np.random.RandomState(0).choice(200, size=6, replace=False)
    X_start = feasible.project(X_train[start], attack.y_poison_)
    kept = feasible.contains(X_train, y_train)
    X_all = np.vstack([X_train[kept], X_start])
    y_all = np.concatenate([y_train[kept], attack.y_poison_])
    _, _, model = smooth_hinge_test_error(X_all, y_all, X_test, y_test)
    gradient = input_gradient_of_test_loss(model, X_all, y_all, X_test, y_test,
                                           indices=np.arange(kept.sum(), len(y_all)))
    step = student_functions["attack_step"](X_start, attack.y_poison_, gradient, 2.0, *params_of(feasible),
                                            box=(0.0, 1.0))
    assert attack.best_iteration_ == 1  # so X_poison_ holds the poisons after the step
    np.testing.assert_allclose(step, attack.X_poison_, atol=1e-8)


# --------------------------------------------------------------------------------------------------
# fast: the checks the grader records from the source notebook
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan():
    import nbformat

    from grading.verdicts import record_plan

    return record_plan(nbformat.read(SOURCE, as_version=4))


def library_function(name):
    """The library's version of the student's function ``name`` (Part C: the reference attack)."""
    from poisoning.feasible_set import SphereSlabFeasibleSet
    from poisoning.influence_attack import InfluenceAttack

    def feasible_set(X, centroids, radii, directions, half_widths, box):
        feasible = SphereSlabFeasibleSet(box=box)
        feasible.classes_, feasible.n_features_in_ = np.array([-1, 1]), np.shape(X)[1]
        feasible.centroids_, feasible.radii_ = np.asarray(centroids, float), np.asarray(radii, float)
        feasible.directions_, feasible.half_widths_ = np.asarray(directions, float), np.asarray(half_widths, float)
        return feasible

    def project_onto_feasible_set(X, y, centroids, radii, directions, half_widths, box=None):
        return feasible_set(X, centroids, radii, directions, half_widths, box).project(X, y)

    def attack_step(X_poison, y_poison, gradient, step_size, centroids, radii, directions, half_widths, box=None):
        largest = np.max(np.linalg.norm(gradient, axis=1))
        if largest == 0:
            return np.array(X_poison, dtype=float)
        feasible = feasible_set(X_poison, centroids, radii, directions, half_widths, box)
        return feasible.project(X_poison + step_size / largest * gradient, y_poison)

    def my_poisons(X_clean, y_clean, X_test, y_test, n_poison):
        with warnings.catch_warnings():  # L-BFGS at the limit of floating point
            warnings.simplefilter("ignore")
            return _influence_attack(X_clean, y_clean, X_test, y_test, n_poison)

    def _influence_attack(X_clean, y_clean, X_test, y_test, n_poison):
        attack = InfluenceAttack(epsilon=n_poison / len(X_clean), n_iter=15, step_size=0.5, copies=True,
                                 removal_fraction=0.0, shrink=1.0, random_state=0).fit(X_clean, y_clean,
                                                                                         X_test, y_test)
        return attack.X_poison_, attack.y_poison_

    return {"project_onto_feasible_set": project_onto_feasible_set, "attack_step": attack_step,
            "my_poisons": my_poisons, "feasible_set": feasible_set}[name]


def test_plan_has_every_test_cell_with_checks(plan):
    from grading import checks

    assert plan.points == {gid: float(points) for gid, points in TEST_CELLS.items()}
    assert list(plan.cells) == list(TEST_CELLS)
    for gid, groups in plan.cells.items():
        assert groups and all(group.calls and len(group.calls) == len(group.judges) for group in groups), gid
        part = gid.split("_")[2]
        assert {group.function for group in groups} == set(FUNCTIONS[f"part_{part}_solution"]), gid
    kinds = {gid: {type(judge) for group in groups for judge in group.judges} for gid, groups in plan.cells.items()}
    assert kinds == {"test_part_a_visible": {checks.Expect}, "test_part_a_hidden": {checks.Expect, checks.Judge},
                     "test_part_b_visible": {checks.Expect}, "test_part_b_hidden": {checks.Expect},
                     "test_part_c_visible": {checks.Judge}, "test_part_c_hidden": {checks.Judge}}
    calls = {gid: sum(len(group.calls) for group in groups) for gid, groups in plan.cells.items()}
    assert calls == {"test_part_a_visible": 5, "test_part_a_hidden": 12, "test_part_b_visible": 3,
                     "test_part_b_hidden": 6, "test_part_c_visible": 1, "test_part_c_hidden": 1}
    tolerances = {gid: {(judge.rtol, judge.atol) for group in groups for judge in group.judges
                        if isinstance(judge, checks.Expect)} for gid, groups in plan.cells.items()}
    assert tolerances["test_part_a_hidden"] == tolerances["test_part_b_hidden"] == {(1e-6, 1e-6)}
    # the hidden inputs of Part C: a split of MNIST 1 vs 7 that no visible cell uses, and 20 poisons
    (group,) = plan.cells["test_part_c_hidden"]
    (args, kwargs), = group.calls
    assert [np.shape(a) for a in args[:4]] == [(400, 784), (400,), (600, 784), (600,)] and args[4] == 20
    assert not kwargs and set(np.unique(args[1]).tolist()) == {-1, 1}
    from poisoning.data import load_mnist, train_test_split_balanced

    X, y = load_mnist([1, 7])
    for seed in range(3):  # not one of the chapter's splits
        assert not np.array_equal(train_test_split_balanced(X, np.where(y == 7, 1, -1), 200, random_state=seed)[0],
                                  args[0])
    helpers.check_plan_inputs(plan, TEST_CELLS)  # the seal gets the inputs only


def test_the_hidden_inputs_exercise_every_constraint(plan):
    """Every hidden projection case moves points; the sphere, the slab and the box each bind somewhere; the steps
    of the real attack states leave the feasible set, with gradients of different sizes."""
    (cases_a, judged_1, judged_2, judged_3) = plan.cells["test_part_a_hidden"]
    binding = {"sphere": 0, "slab": 0, "box": 0}
    for (X, y, centroids, radii, directions, half_widths, *box), _ in cases_a.calls + judged_1.calls + judged_2.calls \
            + judged_3.calls:
        rows = (np.asarray(y) > 0).astype(int)
        offset = X - centroids[rows]
        binding["sphere"] += int(np.sum(np.linalg.norm(offset, axis=1) > radii[rows]))
        binding["slab"] += int(np.sum(np.abs(np.einsum("ij,ij->i", offset, directions[rows])) > half_widths[rows]))
        if box and box[0] is not None:
            binding["box"] += int(np.sum(np.any((X < box[0][0]) | (X > box[0][1]), axis=1)))
    assert min(binding.values()) >= 20, binding
    (cases_b,) = plan.cells["test_part_b_hidden"]
    norms = [np.linalg.norm(args[2], axis=1) for args, _ in cases_b.calls]
    assert sum(n.max() > 2 * n.min() > 0 for n in norms) >= 3  # a step scaled per row would differ
    assert sum(np.all(n == 0) for n in norms) == 1  # and one case without a gradient


def test_the_reference_projection_is_exact_on_the_hidden_inputs(plan):
    """The expected projections (the library's Dykstra, 500 sweeps at most) are the exact ones to 1e-8, so a right
    answer by any other method passes at the tolerance of 1e-6."""
    (cases, *_), (steps,) = plan.cells["test_part_a_hidden"], plan.cells["test_part_b_hidden"]
    for group in (cases, steps):
        for (args, kwargs), judge in zip(group.calls, group.judges):
            if group.function == "project_onto_feasible_set":
                X, y, *params = args
            else:
                X_poison, y_poison, gradient, step_size, *params = args
                largest = np.max(np.linalg.norm(gradient, axis=1))
                if largest == 0:
                    continue
                X, y = X_poison + step_size / largest * gradient, y_poison
            params += [kwargs["box"]] if "box" in kwargs else []
            feasible = library_function("feasible_set")(X, *params[:4], *(params[4:] or [None]))
            exact = feasible.project(X, y, max_iter=100_000, tol=1e-15)
            assert np.abs(judge.value - exact).max() < 1e-8


def test_the_page_documents_the_measured_threshold():
    """The numbers of the hidden cell's comment, and the threshold, are those of the assignment's page."""
    comment = source_of(cell_by_id(read_nb(SOURCE), "test_part_c_hidden"))
    numbers = re.findall(r"^#   .*?\s(\d+\.\d\d)%", comment, flags=re.M)
    assert len(numbers) == 6 and "THRESHOLD_C = 0.04" in comment
    page = (ROOT / "chapters" / "assignments" / f"{ASSIGNMENT}.md").read_text()
    for number in numbers + ["4.00"]:
        assert f"{number}%" in page, number


def test_the_reference_and_the_solution_pass_every_recorded_check(plan, solution_records):
    """The visible expectations and the judges agree with the library, and the solution passes everything."""
    for gid, groups in plan.cells.items():
        for group in groups:
            reference = library_function(group.function)
            for (args, kwargs), judge in zip(group.calls, group.judges):
                outcome = ("value", reference(*args, **kwargs))
                assert judge.problem(outcome, args, kwargs) is None, (gid, group.function, "library", kwargs)
    verdicts = plan.verdicts(solution_records)
    assert all(passed for passed, _ in verdicts.values()), verdicts


@pytest.fixture(scope="module")
def solution_records(plan, student_functions):
    """What a seal would hand back for the solution (Part C's attack runs twice: visible and hidden split)."""
    return helpers.seal_records(plan, student_functions)


@pytest.fixture(scope="module")
def solution_error(plan, solution_records):
    """The test error (percent) the grader measures for the solution's Part C."""
    _, message = plan.verdicts(solution_records)["test_part_c_hidden"]
    return float(re.search(r"test error (\d+\.\d\d)%", message)[1])


@pytest.fixture(scope="module")
def label_flip_error(plan):
    namespace = {"np": np}
    exec(LABEL_FLIPS, namespace)
    records = helpers.seal_records(_only(plan, "test_part_c_hidden"), namespace)
    _, message = _only(plan, "test_part_c_hidden").verdicts(records)["test_part_c_hidden"]
    return float(re.search(r"test error (\d+\.\d\d)%", message)[1])


def _only(plan, *cells):
    """The plan restricted to some test cells."""
    from grading.verdicts import Plan

    return Plan({gid: plan.cells[gid] for gid in cells}, {gid: plan.points[gid] for gid in cells})


def _student_records(plan, student, code, solution_records):
    """The seal's records for one student's cells; Part C's calls are reused from the solution's when the student's
    Part C is the solution's (it calls nothing of Parts A and B), which saves two runs of the attack."""
    namespace = {"__name__": "__main__"}
    exec("import numpy as np\n", namespace)
    for gid in SOLUTION_CELLS:
        exec(compile(code[gid], f"<{student} {gid}>", "exec"), namespace)
    same_c = code["part_c_solution"] == solution_code()["part_c_solution"]
    cells = [gid for gid in plan.cells if not (same_c and gid.startswith("test_part_c"))]
    records = helpers.seal_records(_only(plan, *cells), namespace)
    if same_c:
        records += [r for r in solution_records if r["cell"].startswith("test_part_c")]
    return records


@pytest.mark.parametrize("student", [s for s, code in {**submission_code(), **extra_code()}.items()
                                     if set(code) == set(SOLUTION_CELLS) and s not in ("alias", "sphereonly")])
def test_verdicts_give_the_partial_scores(plan, solution_records, student):
    """The plausible-wrong answers fail exactly their cells (the batch checks the first ones through the seal)."""
    code = {**submission_code(), **extra_code()}[student]
    verdicts = plan.verdicts(_student_records(plan, student, code, solution_records))
    failed = sorted(gid for gid, (passed, _) in verdicts.items() if not passed)
    assert failed == sorted({**FAILED_CELLS, **EXTRA_FAILED_CELLS}[student]), {gid: verdicts[gid][1] for gid in failed}


def test_sphere_only_projection_fails_parts_a_and_b(plan, solution_records):
    """sphereonly's Part C is another start of the model answer: checked in the batch; here Parts A and B."""
    code = {**submission_code()["sphereonly"], "part_c_solution": solution_code()["part_c_solution"]}
    verdicts = plan.verdicts(_student_records(plan, "sphereonly", code, solution_records))
    assert sorted(gid for gid, (passed, _) in verdicts.items() if not passed) == sorted(FAILED_CELLS["sphereonly"])
    assert "point 0 lies outside the slab of its class" in verdicts["test_part_a_hidden"][1] \
        or "values differ from the expected ones" in verdicts["test_part_a_hidden"][1]


def test_the_judges_explain_what_is_wrong(plan, solution_records):
    from grading.wire import decode

    # Part A's judge: outside the slab, not the closest point, the wrong shape
    group = plan.cells["test_part_a_hidden"][1]
    (args, kwargs), judge = group.calls[0], group.judges[0]
    X, y, centroids, radii, directions, half_widths, box = args
    right = library_function("project_onto_feasible_set")(*args)
    assert judge.problem(("value", right), args, kwargs) is None
    rows = (y > 0).astype(int)
    shifted = right + 10 * directions[rows]
    assert re.match(r"point \d+ lies outside the (sphere|slab) of its class by", judge.problem(("value", shifted), args,
                                                                                              kwargs))
    inner = centroids[rows] + 0.5 * (right - centroids[rows])  # feasible (convex set, centroid inside), farther
    assert re.match(r"point \d+ is feasible but .* farther from its input than the closest feasible point",
                    judge.problem(("value", inner), args, kwargs))
    assert judge.problem(("value", right[:-1]), args, kwargs).startswith("expected an array of shape")

    # Part C's judges: the form of the poisons first, then the measurement
    hidden = plan.cells["test_part_c_hidden"][0]
    (args, kwargs), judge = hidden.calls[0], hidden.judges[0]
    poisons = next(decode(r["value"]) for r in solution_records if r["cell"] == "test_part_c_hidden")
    X_poison, y_poison = poisons
    assert judge.verdict(("value", poisons), args, kwargs)[0] is None
    for wrong, message in [
        ([X_poison, y_poison], "my_poisons must return a tuple (X_poison, y_poison)"),
        ((X_poison[:5], y_poison), "X_poison must be an array of shape (20, 784), got shape (5, 784)"),
        ((X_poison, y_poison[:, None]), "y_poison must be an array of shape (20,), got shape (20, 1)"),
        ((X_poison + 0.5, y_poison), "every pixel must lie in [0, 1]"),
        ((X_poison, 2 * y_poison), "the labels must be -1 or +1"),
        ((np.full_like(X_poison, np.nan), y_poison), "X_poison must hold finite numbers"),
    ]:
        assert judge.problem(("value", wrong), args, kwargs) == message
    visible = plan.cells["test_part_c_visible"][0]
    assert visible.judges[0].problem(("value", (X_poison[:10], y_poison[:10])), *visible.calls[0]) is None
    assert visible.judges[0].problem(("value", (X_poison[:10] - 1, y_poison[:10])), *visible.calls[0]).startswith(
        "every pixel must lie in [0, 1], got values from -1")


def test_the_leaderboard_reads_exactly_the_graders_wording(plan, solution_records, label_flip_error, tmp_path):
    """The Part C verdicts, as ApplyVerdicts writes them, match the leaderboard's patterns; forged ones do not."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from grading.leaderboard import BOARDS, Entry, ranked, read_verdict, write_html
    from grading.pipeline import FAILURE

    board = BOARDS[ASSIGNMENT]
    passed, message = plan.verdicts(solution_records)["test_part_c_hidden"]
    namespace = {"np": np}
    exec(LABEL_FLIPS, namespace)
    failed_passed, failed_message = _only(plan, "test_part_c_hidden").verdicts(
        helpers.seal_records(_only(plan, "test_part_c_hidden"), namespace))["test_part_c_hidden"]
    assert passed and not failed_passed

    def notebook(*outputs, grade_id="test_part_c_hidden"):
        meta = {"nbgrader": {"grade": True, "grade_id": grade_id, "locked": True, "points": 4, "schema_version": 3,
                             "solution": False}}
        path = tmp_path / f"nb{len(list(tmp_path.iterdir()))}.ipynb"
        nbformat.write(new_notebook(cells=[new_code_cell("pass", metadata=meta, outputs=list(outputs))]), path)
        return path

    def verdict(gid, ok, text):  # what ApplyVerdicts writes
        if ok:
            return new_output("stream", name="stdout", text=f"{gid}: {text} (checked by the grader)\n")
        return new_output("error", ename=FAILURE, evalue=text, traceback=[f"{FAILURE}: {gid}: {text}"])

    said, value, threshold, _ = read_verdict(notebook(verdict("test_part_c_hidden", True, message)), board)
    assert (said, threshold) == (True, THRESHOLD) and f"{value:.2f}" in message and value >= THRESHOLD
    said, value, threshold, _ = read_verdict(notebook(verdict("test_part_c_hidden", False, failed_message)), board)
    assert (said, value, threshold) == (False, label_flip_error, THRESHOLD)
    # a student's exception cannot carry a value, nor can a verdict of another cell, nor two outputs
    call = failed_message.split(": test error")[0]
    forged = f"{call}: raised AssertionError: test error 99.00% under the loss defence, below the threshold 4.00%"
    assert read_verdict(notebook(verdict("test_part_c_hidden", False, forged)), board)[:2] == (False, None)
    forged = f"{call}: no result (ValueError: x): test error 99.00% under the loss defence, below the threshold 4.00%"
    assert read_verdict(notebook(verdict("test_part_c_hidden", False, forged)), board)[:2] == (False, None)
    assert read_verdict(notebook(verdict("test_part_c_visible", True, message), grade_id="test_part_c_visible"),
                        board)[:2] == (None, None)
    two = notebook(verdict("test_part_c_hidden", True, message), verdict("test_part_c_hidden", True, message))
    assert read_verdict(two, board)[:2] == (None, None)
    assert read_verdict(notebook(new_output("stream", name="stderr", text=message)), board)[:2] == (None, None)

    # ranks: highest first, equal values share a rank, no value last; the page escapes what it shows
    rows = ranked([Entry("b", 5.0, True), Entry("a", 5.0, True), Entry("c", 9.5, True), Entry("<x>", None, False,
                   note="not measured: <script>"), Entry("d", 1.5, False)])
    assert [(e.student, e.rank) for e in rows] == [("c", 1), ("a", 2), ("b", 2), ("d", 4), ("<x>", None)]
    page = write_html(rows, tmp_path / "board" / "page.html", ASSIGNMENT, board)
    text = open(page).read()
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;x&gt;" in text


# --------------------------------------------------------------------------------------------------
# the threshold of Part C, measured again (slow: the attacks run)
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_threshold_lies_between_the_naive_poisons_and_the_attacks(plan, solution_error, label_flip_error):
    """The numbers the hidden cell documents: naive poisons well below 4%, the reference and the model answer well
    above, the chapter's attack (built for the sphere and slab) below. One test image is 1/600 = 0.17 points."""
    from threadpoolctl import threadpool_limits

    from poisoning.influence_attack import InfluenceAttack, defended_test_error
    from poisoning.sanitization import LossDefence
    from poisoning.threat_model import label_flip_poisons

    (args, _), = plan.cells["test_part_c_hidden"][0].calls
    X_clean, y_clean, X_test, y_test, n_poison = args

    def error(X_poison=None, y_poison=None):
        X, y = X_clean, y_clean
        if X_poison is not None:
            X, y = np.vstack([X_clean, X_poison]), np.concatenate([y_clean, y_poison])
        with threadpool_limits(1):
            return 100 * defended_test_error(X, y, X_test, y_test, [LossDefence(removal_fraction=0.05)])[0]

    start = np.random.RandomState(3).randint(len(X_clean))
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chapter = InfluenceAttack(epsilon=0.05, n_iter=15, step_size=0.5, copies=True, random_state=0).fit(
            X_clean, y_clean, X_test, y_test)
        started = time.monotonic()
        reference = InfluenceAttack(epsilon=0.05, n_iter=15, step_size=0.5, copies=True, removal_fraction=0.0,
                                    shrink=1.0, random_state=0).fit(X_clean, y_clean, X_test, y_test)
        reference_seconds = time.monotonic() - started
    measured = {
        "the clean training set, no poison": error(),
        "20 label flips": error(*label_flip_poisons(X_clean, y_clean, n_poison, random_state=3)),
        "20 copies of one label-flipped training image": error(np.repeat(X_clean[start][None], n_poison, axis=0),
                                                               np.full(n_poison, -y_clean[start])),
        "the chapter's InfluenceAttack": error(chapter.X_poison_, chapter.y_poison_),
        "the loosest sphere and slab": error(reference.X_poison_, reference.y_poison_),
        "the model solution": solution_error,
    }
    print(json.dumps(measured, indent=1), f"reference attack: {reference_seconds:.1f} s")
    comment = source_of(cell_by_id(read_nb(SOURCE), "test_part_c_hidden"))
    documented = {}
    for line in comment.splitlines():
        found = re.match(r"#   (.*?)\s+(\d+\.\d\d)%", line)
        if found:
            documented[found[1]] = float(found[2])
    assert len(documented) == 6
    for (label, value), (text, number) in zip(measured.items(), documented.items()):
        assert text.startswith(label) or label in text, (label, text)
        assert value == pytest.approx(number, abs=0.34), (label, value, number)  # within two test images
    naive = [measured[k] for k in list(measured)[:3]] + [label_flip_error]
    assert max(naive) <= THRESHOLD - 2.0
    assert measured["the chapter's InfluenceAttack"] < THRESHOLD
    assert measured["the loosest sphere and slab"] >= THRESHOLD + 2.0 and solution_error >= THRESHOLD + 3.0


def test_recording_stays_fast():
    """The grader records the plan once per run (the Part C inputs and the Part A and B references)."""
    import nbformat

    from grading.verdicts import record_plan

    started = time.monotonic()
    record_plan(nbformat.read(SOURCE, as_version=4))
    assert time.monotonic() - started < 20
