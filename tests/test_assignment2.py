"""Assignment 2 (data sanitization defences) end to end through the real nbgrader, and its reference checks.

Everything runs in a temporary copy of the course folder (nbgrader_config.py and solutions/). One
``course autograde`` call grades a small batch built from the released notebook: the solution, the untouched
student version, plausible but wrong answers (each with its exact partial score: one of them passes its visible
test and fails only the hidden one) and answers that alias or call the reference defences of
:mod:`poisoning.sanitization`.

The fast tests check the notebook's nbgrader metadata, the solutions against the library, and the test-cell
helpers on the sanitization module: its functions *and the methods of its defence classes* are switched off
while a student's function runs.
"""

import importlib
import inspect
import json
import sys
import textwrap
import types

import grading_helpers as helpers
import numpy as np
import pytest
from grading_helpers import ROOT, cell_by_id, edited, read_nb, run_cli, source_of, summary_rows

ASSIGNMENT = "assignment2"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

FUNCTIONS = {  # solution cell -> the functions a student writes in it
    "part_a_solution": ["keep_mask_from_scores"],
    "part_b_solution": ["l2_scores", "slab_scores"],
    "part_c_solution": ["knn_scores"],
    "part_d_solution": ["loss_scores"],
    "part_e_solution": ["removal_rates"],
}
SOLUTION_CELLS = list(FUNCTIONS)
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


ALIAS = {  # every part through the reference defences: imported, wrapped, subclassed, or called with a fallback
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
            try:
                return SlabDefence().fit(X, y).scores_
            except RuntimeError:  # switched off: fall back on a computation of my own
                scores = np.empty(len(X))
                for label in np.unique(y):
                    c = y == label
                    mu = X[c].mean(axis=0)
                    scores[c] = np.abs((X[c] - mu) @ (mu - X[~c].mean(axis=0)))
                return scores
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


def submissions(released_nb):
    """``{student: notebook JSON text}`` for the batch, built from the released notebook."""
    sol = solution_code()
    a, b, c, d = (sol[g] for g in SOLUTION_CELLS[:4])

    def student(replacements):
        return helpers.with_cells(released_nb, replacements)

    return {
        "solution": student(sol),
        "blank": student({}),
        # the L2 score measured from the mean of all points instead of the class centroid
        "globalmean": student({**sol, "part_b_solution": edited(
            b, "X[in_class] - X[in_class].mean(axis=0), axis=1", "X[in_class] - X.mean(axis=0), axis=1")}),
        # the slab's other centroid as the mean of the other classes' centroids, not of their points: the same
        # for two classes (the visible test passes), wrong for three unbalanced ones (the hidden test fails)
        "othercentroids": student({**sol, "part_b_solution": edited(
            b, "centroid - X[~in_class].mean(axis=0)",
            "centroid - np.mean([X[y == other].mean(axis=0) for other in np.unique(y) if other != label], axis=0)")}),
        # k-NN that counts the point itself as its own nearest neighbour
        "selfneighbour": student({**sol, "part_c_solution": edited(
            c, "        np.fill_diagonal(distances, np.inf)  # a point is not its own neighbour\n", "")}),
        # f * n_c rounded up instead of down
        "roundup": student({**sol, "part_a_solution": edited(
            a, "np.floor(removal_fraction * len(idx) + 1e-9)", "np.ceil(removal_fraction * len(idx))")}),
        # the log loss of the predicted label instead of the point's own label
        "predictedloss": student({**sol, "part_d_solution": edited(
            d, "np.searchsorted(model.classes_, y)", "model.predict_proba(X).argmax(axis=1)")}),
        # the reference, aliased or called, in every part
        "alias": student(ALIAS),
    }


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
    "alias": list(TEST_CELLS),
}
EXPECTED = {student: AUTOGRADED_MAX - sum(TEST_CELLS[g] for g in cells) for student, cells in FAILED_CELLS.items()}


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


@pytest.mark.slow
def test_release_contains_no_solution_and_no_hidden_test(released):
    student_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    names = [name for group in FUNCTIONS.values() for name in group]
    text = helpers.check_student_version(read_nb(SOURCE), student_nb, SOLUTION_CELLS, WRITTEN_CELLS, names,
                                         min_secret_lines=60)
    # what the hidden tests compare with, and the model answer, appear nowhere in the student version
    for fragment in ("check_against_reference", "Defence(", "GivenScores", "keep_mask_reference", "rng_a",
                     "feasible set** $\\mathcal F"):
        assert fragment not in text, fragment
    # the hidden-test cells are still there (graded), with their first comment only
    for gid in TEST_CELLS:
        if gid.endswith("_hidden"):
            assert source_of(cell_by_id(student_nb, gid)).strip().count("\n") == 0


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
    assert EXPECTED == {"solution": 16, "blank": 0, "globalmean": 12, "othercentroids": 13, "selfneighbour": 13,
                        "roundup": 12, "predictedloss": 13, "alias": 0}


@pytest.mark.slow
def test_batch_summary_and_feedback_messages(batch):
    root, result, _ = batch
    assert result.returncode == 0, result.stdout + result.stderr
    rows = summary_rows(result.stdout)
    for student, score in EXPECTED.items():
        assert rows[student][:2] == (score, AUTOGRADED_MAX), (student, rows.get(student))
        assert rows[student][3] == "graded", (student, rows[student])
    assert f"{len(EXPECTED)} of {len(EXPECTED)} students graded" in result.stdout
    assert "the written answers, 3 points, are graded by hand" in result.stdout
    assert "Traceback" not in result.stderr

    def outputs(student, gid):
        nb = read_nb(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        return "".join(source_of({"source": o.get("text", "")}) + "".join(o.get("traceback", []))
                       for o in cell_by_id(nb, gid).get("outputs", []))

    # a failed hidden test says which case failed, in one line; an alias is told why it earns nothing
    assert "Part B: the hidden tests fail: 2 of 4 test cases failed; the first: slab_scores(" in outputs(
        "othercentroids", "test_part_b_hidden")
    assert "Part A: the hidden tests fail" in outputs("roundup", "test_part_a_hidden")
    for gid in ("test_part_a_hidden", "test_part_b_hidden", "test_part_c_hidden", "test_part_d_hidden"):
        assert "called the reference implementation (poisoning.sanitization." in outputs("alias", gid), gid
    assert "is the reference implementation poisoning.sanitization.removal_rates" in outputs(
        "alias", "test_part_e_hidden")
    assert "Part E: the hidden tests pass" in outputs("solution", "test_part_e_hidden")


@pytest.mark.slow
def test_feedback_shows_scores_and_messages_but_no_hidden_test(batch):
    root, _, _ = batch
    result = run_cli("feedback", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stderr
    for student, score in EXPECTED.items():
        html = (root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert f"Score: {score:.1f} / {AUTOGRADED_MAX + sum(WRITTEN_CELLS.values()):.1f}" in html
        # identifiers that only the hidden tests use (the HTML highlights code token by token)
        for name in ("check_against_reference", "GivenScoresA", "keep_mask_reference_a", "rng_b", "cases_c",
                     "means_d", "X_flip_e"):
            assert name not in html, (student, name)
    html = (root / "feedback" / "othercentroids" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "Part B: the hidden tests fail: 2 of 4 test cases failed" in html


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
    points, ids = {}, []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if "grade_id" in meta:
            ids.append(meta["grade_id"])
        if meta.get("grade"):
            points[meta["grade_id"]] = meta["points"]
        if meta.get("solution") and cell.cell_type == "code":
            assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") >= 1
        if meta.get("grade") and cell.cell_type == "code":
            assert meta["locked"] and not meta["solution"]
            hidden = "### BEGIN HIDDEN TESTS" in cell.source
            assert hidden == meta["grade_id"].endswith("_hidden")
            if hidden:
                assert "check_against_reference" in cell.source and "with hidden_tests(" in cell.source
                # nothing may shadow a student's function (e.g. importing removal_rates from the library)
                assert not any(f"import {name}" in cell.source or f", {name}\n" in cell.source
                               for names in FUNCTIONS.values() for name in names)
            else:
                assert "student_call" in cell.source
    assert len(ids) == len(set(ids))
    assert points == {**TEST_CELLS, **WRITTEN_CELLS}
    for gid in WRITTEN_CELLS:
        cell = cell_by_id(json.loads(SOURCE.read_text()), gid)
        assert cell["cell_type"] == "markdown" and cell["metadata"]["nbgrader"]["solution"]


@pytest.fixture
def student_functions():
    namespace = {"__name__": "__main__"}
    exec("import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n", namespace)
    for code in solution_code().values():
        exec(compile(code, "<student cell>", "exec"), namespace)
    return namespace


def test_solution_signatures(student_functions):
    signatures = {name: str(inspect.signature(student_functions[name]))
                  for names in FUNCTIONS.values() for name in names}
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
# fast: the test-cell helpers on the sanitization module
# --------------------------------------------------------------------------------------------------
def l2_reference(X, y):
    from poisoning.sanitization import L2Defence

    return L2Defence().fit(X, y).scores_


def test_check_against_reference_with_a_callable_and_by_name(student_functions):
    from poisoning.course.checks import check_against_reference
    from poisoning.sanitization import KNNDefence

    X, y, is_poison = poisoned_data(3)
    check_against_reference(student_functions["l2_scores"], l2_reference, [((X, y), {})])
    check_against_reference(student_functions["knn_scores"],
                            lambda X, y, n_neighbors=5: KNNDefence(n_neighbors=n_neighbors).fit(X, y).scores_,
                            [((X, y), {"n_neighbors": k}) for k in (1, 4)])
    keep = np.arange(len(y)) % 7 != 0
    cases = [((keep, is_poison), {}), ((keep, np.zeros(len(y), bool)), {})]  # the second: detection rate nan
    check_against_reference(student_functions["removal_rates"], "removal_rates", cases)

    # a wrong function fails with the name of the student's function and the first failing case
    with pytest.raises(AssertionError, match=r"1 of 1 test cases failed; the first: slab_scores\(array of shape"):
        check_against_reference(student_functions["slab_scores"], l2_reference, [((X, y), {})])
    # dicts: wrong keys, a wrong value, nan where a number is expected
    with pytest.raises(AssertionError, match="expected the keys 'detection rate', 'false-positive rate'"):
        check_against_reference(lambda keep, is_poison: {"detection": 0.0}, "removal_rates", cases[:1])
    with pytest.raises(AssertionError, match=r"\['false-positive rate'\]: expected"):
        check_against_reference(lambda keep, is_poison: {"detection rate": 1 / 3, "false-positive rate": 0.5},
                                "removal_rates", [((np.arange(7) != 0, np.arange(7) < 3), {})])
    with pytest.raises(AssertionError, match="expected a dict"):
        check_against_reference(lambda keep, is_poison: (1.0, 0.0), "removal_rates", cases[:1])
    with pytest.raises(LookupError, match="no reference function named 'l2_scores'"):
        check_against_reference(student_functions["l2_scores"], "l2_scores", [((X, y), {})])


def test_the_sanitization_reference_earns_nothing(student_functions):
    import poisoning.sanitization as san
    from poisoning.course.checks import check_against_reference, student_call

    X, y, _ = poisoned_data(4)
    cases = [((X, y), {})]
    # (a) a reference function or method itself, or a function made from its code, is rejected before it runs
    for fn in (san.removal_rates, san.L2Defence.fit, san.SanitizationDefence.fit, san.KNNDefence.__init__):
        with pytest.raises(AssertionError, match="is the reference implementation poisoning.sanitization"):
            check_against_reference(fn, l2_reference, cases)
    clone = types.FunctionType(san.L2Defence._score.__code__, san.__dict__, "l2_scores")
    with pytest.raises(AssertionError, match="poisoning"):
        check_against_reference(clone, l2_reference, cases)

    # (b) while the student's function runs, every function and method is switched off, however it is reached;
    # code of the module that runs anyway is noticed, even where the student catches the error
    namespace = {"__name__": "__main__", "np": np, "own": student_functions["l2_scores"]}
    exec(textwrap.dedent("""\
        from poisoning.sanitization import L2Defence, SanitizationDefence
        import poisoning.sanitization as san
        import types

        def estimator(X, y):
            return L2Defence().fit(X, y).scores_

        def method(X, y):  # skips __init__
            defence = object.__new__(L2Defence)
            defence.removal_fraction = 0.05
            return defence.fit(X, y).scores_

        def helper(X, y):
            centroids = san._class_centroids(X, y, np.unique(y))
            return np.linalg.norm(X - centroids[np.searchsorted(np.unique(y), y)], axis=1)

        class Mine(SanitizationDefence):
            def _fit_scores(self, X, y):
                return own(X, y)

        def subclass(X, y):
            return Mine().fit(X, y).scores_

        def catches(X, y):
            try:
                return estimator(X, y)
            except RuntimeError:
                return own(X, y)

        score_code = L2Defence._score.__code__.replace()  # a copy, taken while the reference is on


        def copied(X, y):  # the copy, called on a hand-made instance
            score = types.FunctionType(score_code, san.__dict__)
            defence = object.__new__(L2Defence)
            classes = np.unique(y)
            defence.classes_ = classes
            defence.centroids_ = np.stack([X[y == c].mean(axis=0) for c in classes])
            return score(defence, X, y)
        """), namespace)
    for name in ("estimator", "method", "helper", "subclass", "catches", "copied"):
        with pytest.raises(AssertionError, match=r"called the reference implementation \(poisoning\.sanitization\."):
            check_against_reference(namespace[name], l2_reference, cases)
    with pytest.raises(RuntimeError, match="KNNDefence.__init__ is switched off"):
        student_call(lambda X, y: san.KNNDefence(n_neighbors=2).fit(X, y).scores_, X, y)

    # assignment 1's reference is switched off as well, at the same time
    import poisoning.mean_estimation as me

    with pytest.raises(RuntimeError, match="mean_estimation.trimmed_mean is switched off"):
        student_call(lambda X: me.trimmed_mean(X), np.arange(5.0))

    # afterwards everything works again: the methods that call super() too, sklearn's introspection of __init__
    knn = san.KNNDefence(n_neighbors=2, removal_fraction=0.1).fit(X, y)
    assert knn.get_params() == {"n_neighbors": 2, "per_class": True, "removal_fraction": 0.1}
    assert repr(san.LossDefence(loss="log")) == "LossDefence(loss='log')"
    np.testing.assert_allclose(san.L2Defence().fit(X, y).scores_, student_functions["l2_scores"](X, y))
    assert me.trimmed_mean(np.arange(10.0), 0.1) == 4.5
    assert sys.getprofile() is None


def test_every_function_and_method_is_switched_off_and_restored():
    import poisoning.sanitization as san
    from poisoning.course import checks

    functions = checks._reference_functions()
    labels = {label for label, _ in functions}
    assert {"poisoning.sanitization.removal_rates", "poisoning.sanitization.SanitizationDefence.fit",
            "poisoning.sanitization.KNNDefence.__init__", "poisoning.sanitization._class_centroids",
            "poisoning.mean_estimation.trimmed_mean"} <= labels
    methods = [fn for cls in (san.L2Defence, san.SlabDefence, san.LossDefence, san.KNNDefence, san.SVDDefence)
               for fn in vars(cls).values() if inspect.isfunction(fn)]
    assert all(any(fn is f for _, f in functions) for fn in methods)
    originals = {id(fn): fn.__code__ for _, fn in functions}
    with pytest.raises(AssertionError, match="called the reference implementation"):  # the calls below
        with checks.reference_disabled():
            for label, fn in functions:
                assert fn.__code__.co_filename == checks._DISABLED_FILENAME, label
                assert fn.__code__.co_freevars == originals[id(fn)].co_freevars, label
                with pytest.raises(RuntimeError, match=f"{label} is switched off"):
                    types.FunctionType(fn.__code__, {}, closure=fn.__closure__)()
    assert all(fn.__code__ is originals[id(fn)] for _, fn in functions)
    importlib.import_module("poisoning.sanitization").L2Defence().fit(np.eye(4), [0, 0, 1, 1])
