"""Assignment 2 (data sanitization defences) end to end through the real nbgrader, and the checks it records.

Everything runs in a temporary copy of the course folder (nbgrader_config.py and solutions/). One
``course autograde`` call grades a small batch built from the released notebook: the solution, the untouched
student version, plausible but wrong answers (each with its exact partial score: one of them passes its visible
test and fails only the hidden one; one attacks in Part F with copies of the target, which the defence removes)
and answers that alias or call the reference defences of :mod:`poisoning.sanitization`, which earn nothing
because that module is not importable in the seal.

The fast tests check the notebook's nbgrader metadata, the solutions against the library, and the checks the
grader records from the source notebook: the visible expectations agree with the library, the solution passes
every check, and the plausible-wrong answers get their partial scores from the grader's verdicts. Part F is graded
by its outcome (a judge replays the defence and trains the victim on four hidden instances): the reference attack
flips every hidden target with about half the budget, the naive attacks flip none, malformed poisons are refused
with a reason, and the hidden instances are what the notebook says they are.
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
    "part_f_solution": ["poisons_past_sanitizer"],
}
SOLUTION_CELLS = list(FUNCTIONS)
STUDENT_FUNCTIONS = [name for names in FUNCTIONS.values() for name in names]
TEST_CELLS = {  # grade id -> points
    "test_part_a_visible": 1, "test_part_a_hidden": 3,
    "test_part_b_visible": 1, "test_part_b_hidden": 3,
    "test_part_c_visible": 1, "test_part_c_hidden": 2,
    "test_part_d_visible": 1, "test_part_d_hidden": 2,
    "test_part_e_visible": 1, "test_part_e_hidden": 1,
    "test_part_f_visible": 1, "test_part_f_1_hidden": 1, "test_part_f_2_hidden": 1, "test_part_f_3_hidden": 1,
    "test_part_f_4_hidden": 1,
}
F_HIDDEN = [f"test_part_f_{k}_hidden" for k in range(1, 5)]  # Part F: one hidden instance each, graded by outcome
WRITTEN_CELLS = {"answer_g": 3}
AUTOGRADED_MAX = sum(TEST_CELLS.values())  # 21

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
    "part_f_solution": "from poisoning.sanitization import centroid_shift_poisons as poisons_past_sanitizer\n",
}


def submission_code():
    """``{student: {solution cell: code}}`` for the batch (cells not given keep the released stubs)."""
    sol = solution_code()
    a, b, c, d, _, f = (sol[g] for g in SOLUTION_CELLS)
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
        # Part F: exact copies of the target with the wrong label, the naive targeted attack, which passes the visible
        # test (the form is right) and flips no hidden target (the defence removes every copy)
        "copies": {**sol, "part_f_solution": f[:f.index("    # The sphere and the slab")]
                   + "    return np.tile(x_target, (n_poison, 1)), np.full(n_poison, y_wrong)\n"},
        # the reference, aliased or called, in every part
        "alias": ALIAS,
    }


def submissions(released_nb):
    """``{student: notebook JSON text}`` for the batch, built from the released notebook."""
    return {student: helpers.with_cells(released_nb, code) for student, code in submission_code().items()}


PARTS = {"a": ["test_part_a_visible", "test_part_a_hidden"], "b": ["test_part_b_visible", "test_part_b_hidden"],
         "c": ["test_part_c_visible", "test_part_c_hidden"], "d": ["test_part_d_visible", "test_part_d_hidden"],
         "e": ["test_part_e_visible", "test_part_e_hidden"], "f": ["test_part_f_visible", *F_HIDDEN]}
FAILED_CELLS = {  # student -> the test cells that must earn nothing (all others earn their points)
    "solution": [],
    "blank": list(TEST_CELLS),
    "globalmean": PARTS["b"],
    "othercentroids": ["test_part_b_hidden"],
    "selfneighbour": PARTS["c"],
    "roundup": PARTS["a"],
    "predictedloss": PARTS["d"],
    "copies": F_HIDDEN,
    "alias": list(TEST_CELLS),  # poisoning.sanitization is not importable in the seal
}
EXPECTED = {student: AUTOGRADED_MAX - sum(TEST_CELLS[g] for g in cells) for student, cells in FAILED_CELLS.items()}


def test_expected_scores():
    assert EXPECTED == {"solution": 21, "blank": 0, "globalmean": 17, "othercentroids": 18, "selfneighbour": 18,
                        "roundup": 17, "predictedloss": 18, "copies": 17, "alias": 0}


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
                     "4242", "feasible set** $\\mathcal F", "centroid_shift_poisons", "decoy", "N_POISON_F",
                     "REMOVAL_FRACTION_F", "target_flipped_f", "digits_instance_f", "cancer_instance_f",
                     "instance_f1", "(3, 8), 11, 37", "(4, 9), 12, 12", "(1, 7), 13, 37", "(14, 91)"):
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
    assert len(failed_code) == 6  # the visible tests; the hidden ones are not in the student version
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
    # Part F: what the grader measured, for each hidden instance
    for gid in F_HIDDEN:
        assert "as you wanted; the defence removed 1 of your 15 poisons" in outputs(root, "solution", gid), gid
        assert "the defence removed 15 of your 15 poisons" in outputs(root, "copies", gid), gid
        assert "the target is still classified as" in outputs(root, "copies", gid), gid
        assert "raised NotImplementedError" in outputs(root, "blank", gid), gid

    # the alias: the reference module cannot be imported in the seal, at the top of a cell or inside a function
    message = f"{HIDDEN_MODULE} is not available while {ASSIGNMENT} is graded"
    for gid in ("part_a_solution", "part_b_solution", "part_e_solution", "part_f_solution"):
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
                     "knn_reference_c", "loss_reference_d", "cases_e", "target_flipped_f", "digits_instance_f",
                     "N_POISON_F") + (("centroid_shift_poisons",) if student != "alias" else ()):
            assert name not in html, (student, name)
    html = (root / "feedback" / "othercentroids" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "2 of 8 checks failed; the first: slab_scores(" in html


# --------------------------------------------------------------------------------------------------
# fast: the source notebook
# --------------------------------------------------------------------------------------------------


def test_source_notebook_is_a_valid_nbgrader_assignment():
    helpers.check_source_notebook(SOURCE, [HIDDEN_MODULE], TEST_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                                  outcome_cells=F_HIDDEN)


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
        "poisons_past_sanitizer": "(X_clean, y_clean, x_target, y_wrong, n_poison)",
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
        "poisons_past_sanitizer": san.centroid_shift_poisons,
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
        if gid in F_HIDDEN:  # Part F: a judge measures the outcome on one hidden instance
            assert kinds == {checks.Judge} and len(groups) == 1 and len(groups[0].calls) == 1, gid
        elif gid.endswith("_hidden"):  # a hidden cell compares with the reference's results on fresh data
            assert kinds == {checks.Expect}, gid
            assert sum(len(group.calls) for group in groups) >= 4, gid
    calls = {gid: sum(len(group.calls) for group in groups) for gid, groups in plan.cells.items()}
    assert calls == {"test_part_a_visible": 6, "test_part_a_hidden": 7, "test_part_b_visible": 2,
                     "test_part_b_hidden": 8, "test_part_c_visible": 2, "test_part_c_hidden": 5,
                     "test_part_d_visible": 2, "test_part_d_hidden": 4, "test_part_e_visible": 3,
                     "test_part_e_hidden": 18, "test_part_f_visible": 1, **{gid: 1 for gid in F_HIDDEN}}
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


# --------------------------------------------------------------------------------------------------
# Part F: the judge replays the defence and trains the victim on four hidden instances
# --------------------------------------------------------------------------------------------------
def _instances(plan):
    """``{grade id: (args, judge)}`` of the four hidden instances of Part F, as the grader recorded them."""
    found = {}
    for gid in F_HIDDEN:
        (group,) = plan.cells[gid]
        found[gid] = (group.calls[0][0], group.judges[0])
    return found


def _outcomes(plan, attack):
    """``{grade id: (problem or None, note or None)}``: the judge's verdict on ``attack(*args)`` for each instance."""
    return {gid: judge.verdict(("value", attack(*args)), args, {}) for gid, (args, judge) in _instances(plan).items()}


def _victim(X_clean, y_clean, X_poison, y_poison, removal_fraction=0.1):
    """Steps 1 to 4 of Part F with the library's defences: the fitted victim and the mask of the kept points."""
    from sklearn.linear_model import LogisticRegression

    from poisoning.sanitization import L2Defence, SlabDefence

    X, y = np.vstack([X_clean, X_poison]), np.concatenate([y_clean, y_poison])
    keep = (L2Defence(removal_fraction=removal_fraction).fit(X, y).keep_mask_
            & SlabDefence(removal_fraction=removal_fraction).fit(X, y).keep_mask_)
    return LogisticRegression(max_iter=1000).fit(X[keep], y[keep]), keep


def _naive_copies(X_clean, y_clean, x_target, y_wrong, n_poison):
    """The naive targeted attack of chapter 1: noisy copies of the target with the wrong label (pixels clipped to
    [0, 1] on the digits, no clipping on the standardised tumour features)."""
    from poisoning.threat_model import targeted_poisons

    clip = (0.0, 1.0) if X_clean.shape[1] == 64 else None
    return targeted_poisons(x_target, y_wrong, n_poison, clip=clip, random_state=0)


def _exact_copies(X_clean, y_clean, x_target, y_wrong, n_poison):
    return np.tile(x_target, (n_poison, 1)), np.full(n_poison, y_wrong)


def _untargeted(X_clean, y_clean, x_target, y_wrong, n_poison):
    """The one-shot adaptive attack that chapter 5 prints: inside the feasible set, aimed at no target."""
    from poisoning.sanitization import feasible_set_poisons

    return feasible_set_poisons(X_clean, y_clean, n_poison, n_components=5 if X_clean.shape[1] == 30 else 10)


def _nearest_feasible(X_clean, y_clean, x_target, y_wrong, n_poison, margin=0.9):
    """A targeted attack that stays inside the feasible set of the clean data: copies, labelled y_wrong, of the point
    of the wrong class's ball and slab (each shrunk to 90%) nearest to the target."""
    from poisoning.sanitization import L2Defence, SlabDefence

    sphere = L2Defence(removal_fraction=0.1).fit(X_clean, y_clean)
    slab = SlabDefence(removal_fraction=0.1).fit(X_clean, y_clean)
    i = int(np.searchsorted(sphere.classes_, y_wrong))
    centroid, normal = sphere.centroids_[i], slab.directions_[i] / np.linalg.norm(slab.directions_[i])
    offset = x_target - centroid
    along = np.clip(offset @ normal, *(np.array([-1, 1]) * margin * slab.threshold_[i] / np.linalg.norm(
        slab.directions_[i])))
    across = offset - (offset @ normal) * normal
    room = np.sqrt(max((margin * sphere.threshold_[i]) ** 2 - along**2, 0.0))
    point = centroid + along * normal + across * min(1.0, room / np.linalg.norm(across))
    return np.tile(point, (n_poison, 1)), np.full(n_poison, y_wrong)


def test_the_hidden_instances_are_as_documented(plan):
    """Binary tasks with 150 clean points per class and 15 poisons, whose targets the victim trained on the clean data
    classifies correctly, with a margin between the quartiles; a defence could remove every poison."""
    shapes = []
    for gid, (args, _) in _instances(plan).items():
        X_clean, y_clean, x_target, y_wrong, n_poison = args
        labels = np.unique(y_clean)
        assert len(labels) == 2 and y_wrong in labels and isinstance(y_wrong, int), gid
        assert [int(np.sum(y_clean == label)) for label in labels] == [150, 150], gid
        assert n_poison == 15 and x_target.shape == (X_clean.shape[1],), gid
        assert int(np.floor(0.1 * (150 + n_poison) + 1e-9)) >= n_poison  # the budget of each defence covers them
        victim, _ = _victim(X_clean, y_clean, X_clean[:0], y_clean[:0])
        true = int(labels[labels != y_wrong][0])
        assert victim.predict(x_target[None, :])[0] == true, gid
        shapes.append(X_clean.shape[1])
    assert shapes == [64, 64, 64, 30]  # three pairs of digits and the breast cancer data


def test_the_hidden_targets_have_typical_margins(plan):
    """The targets are neither borderline nor the easiest: their margin under the victim trained on the clean data
    lies between the quartiles of the margins of the test points it classifies correctly."""
    from poisoning.data import load_digits, train_test_split_balanced

    for gid, classes, seed, index in [("test_part_f_1_hidden", (3, 8), 11, 37),
                                      ("test_part_f_2_hidden", (4, 9), 12, 12),
                                      ("test_part_f_3_hidden", (1, 7), 13, 37)]:
        X_pair, y_pair = load_digits(classes=classes)
        X, X_test, y, y_test = train_test_split_balanced(X_pair, y_pair, 150, random_state=seed)
        args, _ = _instances(plan)[gid]
        np.testing.assert_array_equal(args[0], X)
        np.testing.assert_array_equal(args[2], X_test[index])
        victim, _ = _victim(X, y, X[:0], y[:0])
        margins = victim.decision_function(X_test) * np.where(y_test == victim.classes_[1], 1, -1)
        right = margins[margins > 0]
        assert np.quantile(right, 0.25) <= margins[index] <= np.quantile(right, 0.75), gid


def test_the_reference_flips_every_target_with_half_the_budget(plan):
    """The threshold, all four targets, is met by the reference with 8 of the 15 poisons; the decoy alone is
    removed."""
    from poisoning.sanitization import centroid_shift_poisons

    for budget in (15, 8):
        outcomes = _outcomes(plan, lambda X, y, x, wrong, n: centroid_shift_poisons(X, y, x, wrong, min(n, budget)))
        for gid, (problem, note) in outcomes.items():
            assert problem is None, (budget, gid, problem)
            assert note.endswith(f"the defence removed 1 of your {budget} poisons"), (budget, gid, note)


def test_the_solution_flips_every_target_with_a_margin(plan, student_functions):
    """The model solution's poisons leave the target on the wrong side by a clear margin, not by a hair."""
    attack = student_functions["poisons_past_sanitizer"]
    for gid, (args, judge) in _instances(plan).items():
        X_clean, y_clean, x_target, y_wrong, n_poison = args
        X_poison, y_poison = attack(*args)
        assert judge.problem(("value", (X_poison, y_poison)), args, {}) is None, gid
        victim, keep = _victim(X_clean, y_clean, X_poison, y_poison)
        margin = victim.decision_function(x_target[None, :])[0] * (1 if y_wrong == victim.classes_[1] else -1)
        assert margin > 0.5, (gid, margin)
        assert keep[len(X_clean):].tolist() == [True] * 14 + [False]  # the copies pass, the decoy is removed


@pytest.mark.parametrize("name, attack, removed", [
    ("noisy copies of the target (chapter 1)", _naive_copies, 15),
    ("exact copies of the target", _exact_copies, 15),
    ("the untargeted feasible-set attack (chapter 5)", _untargeted, 0),
    ("copies of the nearest point of the clean feasible set", _nearest_feasible, 0),
])
def test_naive_attacks_flip_no_target(plan, name, attack, removed):
    for gid, (problem, _) in _outcomes(plan, attack).items():
        assert problem and problem.startswith("the target is still classified as"), (name, gid, problem)
        assert problem.endswith(f"the defence removed {removed} of your 15 poisons"), (name, gid, problem)


def test_the_judge_refuses_malformed_poisons(plan):
    """Wrong shapes, NaN, labels that are not the task's, too many poisons: a reason, before anything is trained."""
    (args, judge) = _instances(plan)["test_part_f_1_hidden"]
    X_clean, y_clean, x_target, y_wrong, _ = args
    X_poison, y_poison = np.tile(x_target, (15, 1)), np.full(15, y_wrong)
    nan = X_poison.copy()
    nan[0, 0] = np.nan
    for output, reason in [
        ((X_poison,), "must return a tuple (X_poison, y_poison)"),
        (X_poison, "must return a tuple (X_poison, y_poison)"),
        ((X_poison[:, :10], y_poison), "X_poison must be an array of shape (k, 64), got shape (15, 10)"),
        ((x_target, y_poison[:1]), "X_poison must be an array of shape (k, 64), got shape (64,)"),
        ((X_poison.tolist(), y_poison), "X_poison must be an array of shape (k, 64)"),
        ((np.tile(x_target, (16, 1)), np.full(16, y_wrong)), "give between 1 and 15 poisons, got 16"),
        ((X_poison[:0], y_poison[:0]), "give between 1 and 15 poisons, got 0"),
        ((nan, y_poison), "X_poison must hold finite numbers"),
        ((X_poison * 1e7, y_poison), "every entry of X_poison must be at most 1e6 in absolute value"),
        ((X_poison, y_poison[:14]), "y_poison must be an array of shape (15,), got shape (14,)"),
        ((X_poison, y_poison.astype(float)), "the labels y_poison must be integers among the labels of y_clean, [3,"),
        ((X_poison, np.full(15, 5)), "the labels y_poison must be integers among the labels of y_clean, [3, 8]"),
        ((X_poison, y_poison.astype(bool)), "the labels y_poison must be integers among the labels of y_clean"),
    ]:
        problem = judge.problem(("value", output), args, {})
        assert problem and reason in problem, (reason, problem)
    assert "raised NotImplementedError" in judge.problem(("raised", "NotImplementedError", "", []), args, {})
    # other float and integer types are fine: these poisons fail by their outcome, not their form
    for output in [(X_poison.astype(np.float32), y_poison.astype(np.int32)), [X_poison, y_poison]]:
        problem = judge.problem(("value", output), args, {})
        assert problem.startswith("the target is still classified as 3, not 8: the defence removed 15"), problem


def test_the_grading_of_part_f_is_documented_on_the_page():
    page = (ROOT / "chapters" / "assignments" / f"{ASSIGNMENT}.md").read_text()
    notebook = source_of(cell_by_id(read_nb(SOURCE), "part_f"))
    for text in (page, notebook):
        for fact in ("poisons_past_sanitizer(X_clean, y_clean, x_target, y_wrong, n_poison)", "removal_fraction = 0.1",
                     "LogisticRegression(max_iter=1000)", "n_poison = 15", "150", "four hidden instances",
                     "1 point", "10^6"):
            assert fact in text, fact


def test_the_book_prints_none_of_the_solutions():
    """No part can be answered by copying the book: the sanitization chapter states the defences and the removal
    rule as mathematics (no listing of the library's defences, their removal rule, removal_rates or the reference
    attack of Part F), and no line of a solution appears in any chapter."""
    import re

    pages = "\n".join(path.read_text() for path in (ROOT / "chapters").glob("*.md"))
    answers = ("SanitizationDefence", "L2Defence", "SlabDefence", "KNNDefence", "LossDefence", "removal_rates",
               "centroid_shift_poisons")
    printed = re.findall(r":pyobject:\s*(\S+)", pages)
    assert not [name for name in printed if name.split(".")[0] in answers], printed
    for line in "\n".join(solution_code().values()).splitlines():
        if len(line.strip()) > 25 and not line.strip().startswith(("from ", "import ", '"""', "#")):
            assert line.strip() not in pages, line
