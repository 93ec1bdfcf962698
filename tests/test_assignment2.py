"""Assignment 2 (data sanitization defences) end to end through the real nbgrader, and the checks it records.

Everything runs in a temporary copy of the course folder (nbgrader_config.py and solutions/). One
``course autograde`` call grades a small batch built from the released notebook: the solution, the untouched
student version, plausible but wrong answers (each with its exact partial score: one of them passes its visible
test and fails only the hidden one) and answers that alias or call the reference defences of
:mod:`poisoning.sanitization`, which earn nothing because that module is not importable in the seal.

The fast tests check the notebook's nbgrader metadata, the solutions against the library, and the checks the
grader records from the source notebook: the visible expectations agree with the library, the solution passes
every check, and the plausible-wrong answers get their partial scores from the grader's verdicts.
"""

import inspect
import textwrap

import grading_helpers as helpers
import numpy as np
import pytest
from grading_helpers import ROOT, cell_by_id, edited, read_nb, run_cli, source_of, summary_rows

ASSIGNMENT = "assignment2"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
HIDDEN_MODULE = "poisoning.sanitization"

FUNCTIONS = {  # solution cell -> the functions a student writes in it
    "part_a_solution": ["keep_mask_from_scores"],
    "part_b_solution": ["l2_scores", "slab_scores"],
    "part_c_solution": ["knn_scores"],
    "part_d_solution": ["loss_scores"],
    "part_e_solution": ["removal_rates"],
}
SOLUTION_CELLS = list(FUNCTIONS)
STUDENT_FUNCTIONS = [name for names in FUNCTIONS.values() for name in names]
TEST_CELLS = {  # grade id -> points
    "test_part_a_visible": 1, "test_part_a_hidden": 3,
    "test_part_b_visible": 1, "test_part_b_hidden": 3,
    "test_part_c_visible": 1, "test_part_c_hidden": 2,
    "test_part_d_visible": 1, "test_part_d_hidden": 2,
    "test_part_e_visible": 1, "test_part_e_hidden": 1,
}
WRITTEN_CELLS = {"answer_f": 3}
AUTOGRADED_MAX = sum(TEST_CELLS.values())  # 16

# two students at a time (the machine may have only 2 cores); generous limits: a correct notebook needs a few
# seconds and well under 1 GB
LIMITS = ["--jobs", "2", "--cell-timeout", "120", "--cpu-seconds", "120", "--memory-mb", "4096", "--timeout", "300",
          "--no-progress"]


def solution_code():
    """The solution of each solution cell, as a student would type it (no markers)."""
    return helpers.solution_code(SOURCE, SOLUTION_CELLS)


def gradebook_scores(root, student):
    return helpers.gradebook_scores(root, ASSIGNMENT, student)


ALIAS = {  # every part through the reference defences: imported at the top of the cell, or inside the function
    "part_a_solution": textwrap.dedent("""\
        from poisoning.sanitization import L2Defence


        def keep_mask_from_scores(scores, y, removal_fraction=0.05):
            defence = L2Defence(removal_fraction=removal_fraction)
            defence._fit_scores = lambda X, y: np.asarray(scores, dtype=float)
            return defence.fit(np.zeros((len(y), 1)), y).keep_mask_
        """),
    "part_b_solution": textwrap.dedent("""\
        from poisoning.sanitization import L2Defence, SlabDefence

        l2_scores = lambda X, y: L2Defence().fit(X, y).scores_


        def slab_scores(X, y):
            return SlabDefence().fit(X, y).scores_
        """),
    "part_c_solution": textwrap.dedent("""\
        def knn_scores(X, y, n_neighbors=5):
            import poisoning.sanitization as sanitization
            return sanitization.KNNDefence(n_neighbors=n_neighbors).fit(X, y).scores_
        """),
    "part_d_solution": textwrap.dedent("""\
        def loss_scores(X, y):
            from poisoning.sanitization import LossDefence
            return LossDefence().fit(X, y).scores_
        """),
    "part_e_solution": "from poisoning.sanitization import removal_rates\n",
}


def submission_code():
    """``{student: {solution cell: code}}`` for the batch (cells not given keep the released stubs)."""
    sol = solution_code()
    a, b, c, d = (sol[g] for g in SOLUTION_CELLS[:4])
    return {
        "solution": sol,
        "blank": {},
        # the L2 score measured from the mean of all points instead of the class centroid
        "globalmean": {**sol, "part_b_solution": edited(
            b, "X[in_class] - X[in_class].mean(axis=0), axis=1", "X[in_class] - X.mean(axis=0), axis=1")},
        # the slab's other centroid as the mean of the other classes' centroids, not of their points: the same
        # for two classes (the visible test passes), wrong for three unbalanced ones (the hidden test fails)
        "othercentroids": {**sol, "part_b_solution": edited(
            b, "centroid - X[~in_class].mean(axis=0)",
            "centroid - np.mean([X[y == other].mean(axis=0) for other in np.unique(y) if other != label], axis=0)")},
        # k-NN that counts the point itself as its own nearest neighbour
        "selfneighbour": {**sol, "part_c_solution": edited(
            c, "        np.fill_diagonal(distances, np.inf)  # a point is not its own neighbour\n", "")},
        # f * n_c rounded up instead of down
        "roundup": {**sol, "part_a_solution": edited(
            a, "np.floor(removal_fraction * len(idx) + 1e-9)", "np.ceil(removal_fraction * len(idx))")},
        # the log loss of the predicted label instead of the point's own label
        "predictedloss": {**sol, "part_d_solution": edited(
            d, "np.searchsorted(model.classes_, y)", "model.predict_proba(X).argmax(axis=1)")},
        # the reference, aliased or called, in every part
        "alias": ALIAS,
    }


def submissions(released_nb):
    """``{student: notebook JSON text}`` for the batch, built from the released notebook."""
    return {student: helpers.with_cells(released_nb, code) for student, code in submission_code().items()}


PARTS = {"a": ["test_part_a_visible", "test_part_a_hidden"], "b": ["test_part_b_visible", "test_part_b_hidden"],
         "c": ["test_part_c_visible", "test_part_c_hidden"], "d": ["test_part_d_visible", "test_part_d_hidden"],
         "e": ["test_part_e_visible", "test_part_e_hidden"]}
FAILED_CELLS = {  # student -> the test cells that must earn nothing (all others earn their points)
    "solution": [],
    "blank": list(TEST_CELLS),
    "globalmean": PARTS["b"],
    "othercentroids": ["test_part_b_hidden"],
    "selfneighbour": PARTS["c"],
    "roundup": PARTS["a"],
    "predictedloss": PARTS["d"],
    "alias": list(TEST_CELLS),  # poisoning.sanitization is not importable in the seal
}
EXPECTED = {student: AUTOGRADED_MAX - sum(TEST_CELLS[g] for g in cells) for student, cells in FAILED_CELLS.items()}


def test_expected_scores():
    assert EXPECTED == {"solution": 16, "blank": 0, "globalmean": 12, "othercentroids": 13, "selfneighbour": 13,
                        "roundup": 12, "predictedloss": 13, "alias": 0}


# --------------------------------------------------------------------------------------------------
# the pipeline (slow: one release, one autograde of the batch)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return helpers.released_course(tmp_path_factory.mktemp("assignment2"), ASSIGNMENT)


@pytest.fixture(scope="module")
def batch(released):
    """One `course autograde` of the whole batch, given as a .zip."""
    released_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    files = {f"{student}_{ASSIGNMENT}.ipynb": text for student, text in submissions(released_nb).items()}
    return helpers.autograde_zip(released, ASSIGNMENT, files, *LIMITS)


def outputs(root, student, gid):
    """The text of the outputs of one cell of a student's autograded notebook."""
    nb = read_nb(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    return "".join(source_of({"source": o.get("text", "")}) + o.get("evalue", "") + "".join(o.get("traceback", []))
                   for o in cell_by_id(nb, gid).get("outputs", []))


@pytest.mark.slow
def test_release_contains_no_solution_and_no_hidden_test(released):
    student_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    text = helpers.check_student_version(read_nb(SOURCE), student_nb, SOLUTION_CELLS, WRITTEN_CELLS,
                                         STUDENT_FUNCTIONS, min_secret_lines=60)
    # what the hidden tests compare with, and the model answer, appear nowhere in the student version
    for fragment in ("check_cases", "Defence(", "GivenScores", "keep_mask_reference", "_reference_", "def cases_",
                     "4242", "feasible set** $\\mathcal F"):
        assert fragment not in text, fragment
    # the hidden-test cells are still there (graded), with their first comment only
    for gid in TEST_CELLS:
        if gid.endswith("_hidden"):
            assert source_of(cell_by_id(student_nb, gid)).strip().count("\n") == 0
    assert student_nb["metadata"]["grading"] == {"hidden_modules": [HIDDEN_MODULE]}


@pytest.mark.slow
def test_nbgrader_validate_passes_the_solution_and_fails_the_student_version(released):
    source_result, failed_code, failed_written = helpers.validate_source_and_release(released, ASSIGNMENT)
    assert source_result == {}
    assert len(failed_code) == 5  # the visible tests; the hidden ones are not in the student version
    assert all("NotImplementedError" in cell["raw_error"] for cell in failed_code)
    assert failed_written == 1  # the unanswered written question


@pytest.mark.slow
def test_batch_scores_in_the_gradebook(batch):
    root, result, seconds = batch
    print(f"autograde of {len(EXPECTED)} students: {seconds:.0f} s\n{result.stdout}")
    for student, failed in FAILED_CELLS.items():
        score, cells = gradebook_scores(root, student)
        assert score == EXPECTED[student], f"{student}: {score} != {EXPECTED[student]}\n{result.stdout}"
        expected_cells = {gid: 0 if gid in failed else points for gid, points in TEST_CELLS.items()}
        assert {gid: cells[gid] for gid in TEST_CELLS} == expected_cells, student


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
    assert f"hidden from the seals: {HIDDEN_MODULE}" in result.stdout
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

    # a failed hidden test says which call failed, in one line
    assert "2 of 8 checks failed; the first: slab_scores(array of shape" in outputs(
        root, "othercentroids", "test_part_b_hidden")
    assert "checks failed; the first: keep_mask_from_scores(" in outputs(root, "roundup", "test_part_a_hidden")
    assert "the flipped point is the one the model fits worst" in outputs(root, "predictedloss", "test_part_d_visible")
    assert "all 18 checks pass" in outputs(root, "solution", "test_part_e_hidden")
    assert "raised NotImplementedError" in outputs(root, "blank", "test_part_a_visible")

    # the alias: the reference module cannot be imported in the seal, at the top of a cell or inside a function
    message = f"{HIDDEN_MODULE} is not available while {ASSIGNMENT} is graded"
    for gid in ("part_a_solution", "part_b_solution", "part_e_solution"):
        assert message in outputs(root, "alias", gid), gid
    assert "no result (NameError: name 'keep_mask_from_scores' is not defined" in outputs(
        root, "alias", "test_part_a_hidden")
    assert "no result (NameError: name 'removal_rates' is not defined" in outputs(root, "alias", "test_part_e_visible")
    for gid in ("test_part_c_visible", "test_part_c_hidden", "test_part_d_visible", "test_part_d_hidden"):
        assert f"raised ImportError: {message}" in outputs(root, "alias", gid), gid
    # the ungraded demo says why it does not run, instead of a traceback
    for student in ("solution", "alias"):
        nb = read_nb(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        demo = next(cell for cell in nb["cells"] if "feasible_set_poisons" in source_of(cell))
        assert [o["output_type"] for o in demo["outputs"]] == ["stream"], demo["outputs"]
        assert source_of({"source": demo["outputs"][0]["text"]}) == (
            f"the demo needs {HIDDEN_MODULE}, which is not available while the notebook is graded\n")


@pytest.mark.slow
def test_feedback_shows_scores_and_messages_but_no_hidden_test(batch):
    root, _, _ = batch
    result = run_cli("feedback", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stderr
    for student, score in EXPECTED.items():
        html = (root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert f"Score: {score:.1f} / {AUTOGRADED_MAX + sum(WRITTEN_CELLS.values()):.1f}" in html
        # identifiers that only the hidden tests use (the HTML highlights code token by token)
        for name in ("check_cases", "GivenScoresA", "keep_mask_reference_a", "cases_b", "slab_reference_b",
                     "knn_reference_c", "loss_reference_d", "cases_e"):
            assert name not in html, (student, name)
    html = (root / "feedback" / "othercentroids" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "2 of 8 checks failed; the first: slab_scores(" in html


# --------------------------------------------------------------------------------------------------
# fast: the source notebook
# --------------------------------------------------------------------------------------------------


def test_source_notebook_is_a_valid_nbgrader_assignment():
    helpers.check_source_notebook(SOURCE, [HIDDEN_MODULE], TEST_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS)


@pytest.fixture(scope="module")
def student_functions():
    namespace = {"__name__": "__main__"}
    exec("import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n", namespace)
    for code in solution_code().values():
        exec(compile(code, "<student cell>", "exec"), namespace)
    return namespace


def test_solution_signatures(student_functions):
    signatures = {name: str(inspect.signature(student_functions[name])) for name in STUDENT_FUNCTIONS}
    assert signatures == {
        "keep_mask_from_scores": "(scores, y, removal_fraction=0.05)",
        "l2_scores": "(X, y)", "slab_scores": "(X, y)", "knn_scores": "(X, y, n_neighbors=5)",
        "loss_scores": "(X, y)", "removal_rates": "(keep_mask, is_poison)",
    }


def poisoned_data(seed, counts=(40, 25, 30), d=4):
    """Gaussian classes with labels 2, 5, 9, three label flips, two far outliers and an exact copy."""
    from poisoning.sanitization import far_outliers
    from poisoning.threat_model import label_flip_poisons, poison_dataset

    rng = np.random.default_rng(seed)
    labels = np.array([2, 5, 9])[: len(counts)]
    y = np.repeat(labels, counts)
    X = 2.0 * rng.normal(size=(len(labels), d))[np.searchsorted(labels, y)] + rng.normal(size=(len(y), d))
    X_flip, y_flip = label_flip_poisons(X, y, 3, random_state=seed)
    X_far, y_far = far_outliers(X, y, 2, noise_scale=4.0, random_state=seed)
    X, y, is_poison = poison_dataset(X, y, np.vstack([X_flip, X_far, X[:1]]), np.r_[y_flip, y_far, y[:1]])
    return X, y, is_poison


@pytest.mark.parametrize("seed", [0, 1])
def test_solutions_agree_with_the_library(student_functions, seed):
    from poisoning.sanitization import KNNDefence, L2Defence, LossDefence, SlabDefence, removal_rates

    f = student_functions
    X, y, is_poison = poisoned_data(seed)
    for defence, scores in [(L2Defence(), f["l2_scores"](X, y)), (SlabDefence(), f["slab_scores"](X, y)),
                            (KNNDefence(n_neighbors=3), f["knn_scores"](X, y, n_neighbors=3)),
                            (LossDefence(), f["loss_scores"](X, y))]:
        defence.fit(X, y)
        np.testing.assert_allclose(scores, defence.scores_, rtol=1e-9, atol=1e-12)
        keep = f["keep_mask_from_scores"](defence.scores_, y, 0.1)
        np.testing.assert_array_equal(keep, defence.set_params(removal_fraction=0.1).fit(X, y).keep_mask_)
        assert f["removal_rates"](keep, is_poison) == removal_rates(keep, is_poison)
    # ties: the later of two equal scores goes first, as in the library
    ties = np.round(np.random.default_rng(seed).exponential(size=len(y)), 1)
    defence = L2Defence(removal_fraction=0.2)
    defence._fit_scores = lambda X, y: ties
    np.testing.assert_array_equal(f["keep_mask_from_scores"](ties, y, 0.2), defence.fit(X, y).keep_mask_)


# --------------------------------------------------------------------------------------------------
# fast: the checks the grader records from the source notebook
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan():
    import nbformat

    from grading.verdicts import record_plan

    return record_plan(nbformat.read(SOURCE, as_version=4))


def library_function(name):
    """The reference library's version of the student's function ``name``."""
    import poisoning.sanitization as san

    def keep_mask_from_scores(scores, y, removal_fraction=0.05):
        defence = san.L2Defence(removal_fraction=removal_fraction)
        defence._fit_scores = lambda X, y: np.asarray(scores, dtype=float)
        return defence.fit(np.zeros((len(y), 1)), y).keep_mask_

    return {
        "keep_mask_from_scores": keep_mask_from_scores,
        "l2_scores": lambda X, y: san.L2Defence().fit(X, y).scores_,
        "slab_scores": lambda X, y: san.SlabDefence().fit(X, y).scores_,
        "knn_scores": lambda X, y, n_neighbors=5: san.KNNDefence(n_neighbors=n_neighbors).fit(X, y).scores_,
        "loss_scores": lambda X, y: san.LossDefence().fit(X, y).scores_,
        "removal_rates": san.removal_rates,
    }[name]


def test_plan_has_every_test_cell_with_checks(plan):
    from grading import checks

    assert plan.points == {gid: float(points) for gid, points in TEST_CELLS.items()}
    assert list(plan.cells) == list(TEST_CELLS)
    for gid, groups in plan.cells.items():
        assert groups and all(group.calls and len(group.calls) == len(group.judges) for group in groups), gid
        part = gid.split("_")[2]
        part_functions = FUNCTIONS[f"part_{part}_solution"]
        assert {group.function for group in groups} == set(part_functions), gid
        kinds = {type(judge) for group in groups for judge in group.judges}
        if gid.endswith("_hidden"):  # a hidden cell compares with the reference's results on fresh data
            assert kinds == {checks.Expect}, gid
            assert sum(len(group.calls) for group in groups) >= 4, gid
    calls = {gid: sum(len(group.calls) for group in groups) for gid, groups in plan.cells.items()}
    assert calls == {"test_part_a_visible": 6, "test_part_a_hidden": 7, "test_part_b_visible": 2,
                     "test_part_b_hidden": 8, "test_part_c_visible": 2, "test_part_c_hidden": 5,
                     "test_part_d_visible": 2, "test_part_d_hidden": 4, "test_part_e_visible": 3,
                     "test_part_e_hidden": 18}
    # the same tolerances as before the move: k-NN 1e-6 / 1e-8, the loss 1e-4 / 1e-6, the rest the defaults
    tolerances = {gid: {(judge.rtol, judge.atol) for group in groups for judge in group.judges
                        if isinstance(judge, checks.Expect)} for gid, groups in plan.cells.items()}
    assert tolerances["test_part_c_hidden"] == {(1e-6, 1e-8)}
    assert tolerances["test_part_d_hidden"] == {(1e-4, 1e-6)}
    assert tolerances["test_part_b_hidden"] == tolerances["test_part_a_hidden"] == {(1e-7, 1e-9)}
    helpers.check_plan_inputs(plan, TEST_CELLS)  # the seal gets the inputs only


def test_the_reference_and_the_solution_pass_every_recorded_check(plan, student_functions):
    """The visible expectations agree with the library, and the source notebook's solution passes everything."""
    from grading.checks import run_student

    for gid, groups in plan.cells.items():
        for group in groups:
            reference = library_function(group.function)
            for (args, kwargs), judge in zip(group.calls, group.judges):
                outcome = ("value", reference(*args, **kwargs))
                assert judge.problem(outcome, args, kwargs) is None, (gid, group.function, "library", kwargs)
                outcome = run_student(student_functions[group.function], args, kwargs)
                assert outcome[0] == "value", (gid, group.function, outcome)
                assert judge.problem(outcome, args, kwargs) is None, (gid, group.function, "solution", kwargs)


def _verdicts(plan, namespace):
    """The grader's verdicts on the functions in ``namespace``, as if a seal had run them."""
    return plan.verdicts(helpers.seal_records(plan, namespace))


@pytest.mark.parametrize("student", [s for s, code in submission_code().items() if set(code) == set(SOLUTION_CELLS)
                                     and s != "alias"])
def test_verdicts_give_the_partial_scores(plan, student):
    """The plausible-wrong answers fail exactly their cells (the batch checks the same through the seal)."""
    namespace = {"__name__": "__main__"}
    exec("import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n", namespace)
    for gid in SOLUTION_CELLS:
        exec(compile(submission_code()[student][gid], f"<{student} {gid}>", "exec"), namespace)
    verdicts = _verdicts(plan, namespace)
    failed = sorted(gid for gid, (passed, _) in verdicts.items() if not passed)
    assert failed == sorted(FAILED_CELLS[student]), {gid: verdicts[gid][1] for gid in failed}
    assert sum(TEST_CELLS[gid] for gid, (passed, _) in verdicts.items() if passed) == EXPECTED[student]


def test_the_part_d_judges_explain_what_is_wrong(plan):
    """The visible Part D cell checks properties of the scores; each judge says which one failed."""
    (flipped, mean) = plan.cells["test_part_d_visible"]
    args, kwargs = flipped.calls[0]
    X, y = args
    right = library_function("loss_scores")(X, y)
    assert flipped.judges[0].problem(("value", right[::-1].copy()), args, kwargs).startswith(
        "the flipped point is the one the model fits worst")
    assert flipped.judges[0].problem(("value", -right), args, kwargs).startswith("a log loss is positive")
    assert flipped.judges[0].problem(("value", list(right)), args, kwargs).startswith("expected an array of shape (9,)")
    assert mean.judges[0].problem(("value", right + 0.1), args, kwargs).startswith(
        "the mean of the scores is the model's average log loss")
    assert mean.judges[0].problem(("value", right), args, kwargs) is None
    assert "NotImplementedError" in mean.judges[0].problem(("raised", "NotImplementedError", "", []), args, kwargs)
