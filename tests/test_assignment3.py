"""Assignment 3 (influence functions) end to end through the real nbgrader, and the checks it records.

Everything runs in a temporary copy of the course folder (nbgrader_config.py and solutions/). One
``course autograde`` call grades a small batch built from the released notebook: the solution, the untouched
student version, plausible but wrong answers (each with its exact partial score; one of them passes its visible
test and fails only the hidden one, another loses Parts B and C with Part A because they call its Hessian) and
answers that alias or call the reference implementations of :mod:`poisoning.influence`, which earn nothing because
that module (and :mod:`poisoning.influence_attack`) is not importable in the seal.

The fast tests check the notebook's nbgrader metadata, the solutions against the library, and the checks the
grader records from the source notebook: the visible expectations agree with the library, the solution passes
every check (the comparisons with the references and the judges against the ground truth: finite differences of
the gradient, leave-one-out retraining, retraining after moving a training point), and the plausible-wrong
answers get their partial scores from the grader's verdicts.
"""

import inspect
import textwrap
import time
import warnings

import grading_helpers as helpers
import numpy as np
import pytest
from grading_helpers import ROOT, cell_by_id, edited, read_nb, run_cli, source_of, summary_rows

ASSIGNMENT = "assignment3"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
HIDDEN_MODULES = ["poisoning.influence", "poisoning.influence_attack"]

FUNCTIONS = {  # solution cell -> the functions a student writes in it
    "part_a_solution": ["logistic_hessian"],
    "part_b_solution": ["influence_on_params", "influence_on_test_loss"],
    "part_c_solution": ["perturbation_influence"],
}
SOLUTION_CELLS = list(FUNCTIONS)
STUDENT_FUNCTIONS = [name for names in FUNCTIONS.values() for name in names]
TEST_CELLS = {  # grade id -> points
    "test_part_a_visible": 1, "test_part_a_hidden": 3,
    "test_part_b_visible": 1, "test_part_b_hidden": 4,
    "test_part_c_visible": 1, "test_part_c_hidden": 3,
}
WRITTEN_CELLS = {"answer_d": 3}
AUTOGRADED_MAX = sum(TEST_CELLS.values())  # 13

# two students at a time (the machine may have only 2 cores); generous limits: a correct notebook needs a few
# seconds and well under 1 GB in the seal (the demo, which needs the hidden module, is skipped there)
LIMITS = ["--jobs", "2", "--cell-timeout", "120", "--cpu-seconds", "120", "--memory-mb", "4096", "--timeout", "300",
          "--no-progress"]
PRELUDE = "import numpy as np\nfrom scipy.special import expit\n"  # what the set-up cell gives the solution cells


def solution_code():
    """The solution of each solution cell, as a student would type it (no markers)."""
    return helpers.solution_code(SOURCE, SOLUTION_CELLS)


ALIAS = {  # every part through the reference module: imported at the top of the cell, or inside the function
    "part_a_solution": textwrap.dedent("""\
        from poisoning.influence import LogisticModel


        def logistic_hessian(X, y, theta, l2):
            return LogisticModel(l2).hessian(X, y, theta)
        """),
    "part_b_solution": textwrap.dedent("""\
        import poisoning.influence as influence


        def influence_on_params(X, y, theta, l2, index):
            model = influence.LogisticModel(l2)
            model.theta_ = theta
            return influence.influence_on_params(model, X, y, [index])[0]


        def influence_on_test_loss(X, y, theta, l2, x_test, y_test):
            model = influence.LogisticModel(l2)
            model.theta_ = theta
            return influence.influence_on_test_loss(model, X, y, x_test, y_test)
        """),
    "part_c_solution": textwrap.dedent("""\
        def perturbation_influence(X, y, theta, l2, x_test, y_test, index):
            from poisoning.influence_attack import input_gradient_of_test_loss  # the attack module's import of it
            from poisoning.influence import LogisticModel

            model = LogisticModel(l2)
            model.theta_ = theta
            return input_gradient_of_test_loss(model, X, y, x_test, y_test, indices=[index])[0]
        """),
}


def submission_code():
    """``{student: {solution cell: code}}`` for the batch (cells not given keep the released stubs)."""
    sol = solution_code()
    a, b, c = (sol[g] for g in SOLUTION_CELLS)
    return {
        "solution": sol,
        "blank": {},
        # λ on the bias too: Part A fails, and so do Parts B and C, which call this Hessian, except the visible test
        # of Part C (at θ = 0 the bias row of ∇x∇θℓ is 0 and H is diagonal, so the bias entry of H never counts)
        "regbias": {**sol, "part_a_solution": edited(
            a, "H[np.arange(d), np.arange(d)] += l2", "H[np.arange(d + 1), np.arange(d + 1)] += l2")},
        # I_up,params = +H⁻¹∇ℓ and I_up,loss = +∇ℓ_testᵀH⁻¹∇ℓ: the sign of the upweighting lost
        "nominus": {**sol, "part_b_solution": edited(edited(
            b, "return -np.linalg.solve(", "return np.linalg.solve("), "return -gradients @ s_test",
            "return gradients @ s_test")},
        # H in place of H⁻¹ in both influences
        "hessnotinv": {**sol, "part_b_solution": edited(edited(
            b, "np.linalg.solve(logistic_hessian(X, y, theta, l2), gradient)",
            "logistic_hessian(X, y, theta, l2) @ gradient"),
            "np.linalg.solve(logistic_hessian(X, y, theta, l2), test_gradient)",
            "logistic_hessian(X, y, theta, l2) @ test_gradient")},
        # the perturbation influence without the 1/n (as on the lecture's slide)
        "noovern": {**sol, "part_c_solution": edited(
            c, "return -(mixed.T @ s_test) / n", "return -(mixed.T @ s_test)")},
        # ∇x∇θℓ without the derivative through the margin (σ(-m) treated as a constant): right at θ = 0, where
        # w = 0 and the visible tests are, wrong elsewhere
        "constsigma": {**sol, "part_c_solution": edited(
            c, "mixed = expit(m) * expit(-m) * np.outer(x_tilde, theta[:-1])", "mixed = np.zeros((d + 1, d))")},
        # the reference, aliased or called, in every part
        "alias": ALIAS,
    }


def submissions(released_nb):
    """``{student: notebook JSON text}`` for the batch, built from the released notebook."""
    return {student: helpers.with_cells(released_nb, code) for student, code in submission_code().items()}


PARTS = {"a": ["test_part_a_visible", "test_part_a_hidden"], "b": ["test_part_b_visible", "test_part_b_hidden"],
         "c": ["test_part_c_visible", "test_part_c_hidden"]}
FAILED_CELLS = {  # student -> the test cells that must earn nothing (all others earn their points)
    "solution": [],
    "blank": list(TEST_CELLS),
    "regbias": PARTS["a"] + PARTS["b"] + ["test_part_c_hidden"],
    "nominus": PARTS["b"],
    "hessnotinv": PARTS["b"],
    "noovern": PARTS["c"],
    "constsigma": ["test_part_c_hidden"],
    "alias": list(TEST_CELLS),  # poisoning.influence and poisoning.influence_attack are not importable in the seal
}
EXPECTED = {student: AUTOGRADED_MAX - sum(TEST_CELLS[g] for g in cells) for student, cells in FAILED_CELLS.items()}


def test_expected_scores():
    assert EXPECTED == {"solution": 13, "blank": 0, "regbias": 1, "nominus": 8, "hessnotinv": 8, "noovern": 9,
                        "constsigma": 10, "alias": 0}


# --------------------------------------------------------------------------------------------------
# the pipeline (slow: one release, one autograde of the batch)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return helpers.released_course(tmp_path_factory.mktemp("assignment3"), ASSIGNMENT)


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
    # what the hidden tests compare with, the ground truth, and the model answer appear nowhere in the student version
    helpers.check_release(released, ASSIGNMENT, SOURCE, SOLUTION_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                          HIDDEN_MODULES, min_secret_lines=60, fragments=(
                              "check_cases", "_reference_", "leave_one_out(model, X, y", "fit_theta",
                              "finite_differences_a", "def cases_", "3141", "1729",
                              "np.linalg.solve(logistic_hessian", "implicit function theorem"))


@pytest.mark.slow
def test_nbgrader_validate_passes_the_solution_and_fails_the_student_version(released):
    helpers.check_validate(released, ASSIGNMENT, n_visible=3, n_written=1)


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
    assert f"hidden from the seals: {', '.join(HIDDEN_MODULES)}" in result.stdout
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
    assert "3 of 4 checks failed; the first: logistic_hessian(array of shape (4, 1)" in outputs(
        root, "regbias", "test_part_a_visible")
    assert "11 of 12 checks failed; the first: logistic_hessian(array of shape (30, 2)" in outputs(
        root, "regbias", "test_part_a_hidden")  # the case with λ = 0 passes
    assert "4 of 4 checks failed; the first: influence_on_params(array of shape (4, 1)" in outputs(
        root, "nominus", "test_part_b_visible")
    assert "17 of 17 checks failed; the first: influence_on_params(" in outputs(
        root, "hessnotinv", "test_part_b_hidden")
    assert "4 of 4 checks failed; the first: perturbation_influence(array of shape (4, 1)" in outputs(
        root, "noovern", "test_part_c_visible")
    assert "11 of 11 checks failed; the first: perturbation_influence(array of shape (30, 2)" in outputs(
        root, "constsigma", "test_part_c_hidden")
    assert "all 17 checks pass" in outputs(root, "solution", "test_part_b_hidden")
    assert "raised NotImplementedError" in outputs(root, "blank", "test_part_a_visible")

    # the alias: the reference modules cannot be imported in the seal, at the top of a cell or inside a function
    for gid, module in (("part_a_solution", "poisoning.influence"), ("part_b_solution", "poisoning.influence")):
        assert f"{module} is not available while {ASSIGNMENT} is graded" in outputs(root, "alias", gid), gid
    assert "no result (NameError: name 'logistic_hessian' is not defined" in outputs(
        root, "alias", "test_part_a_hidden")
    assert "no result (NameError: name 'influence_on_params' is not defined" in outputs(
        root, "alias", "test_part_b_visible")
    message = f"poisoning.influence_attack is not available while {ASSIGNMENT} is graded"
    for gid in ("test_part_c_visible", "test_part_c_hidden"):
        assert f"raised ImportError: {message}" in outputs(root, "alias", gid), gid
    # the ungraded demo says why it does not run, instead of a traceback
    for student in ("solution", "alias"):
        nb = read_nb(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        demo = next(cell for cell in nb["cells"] if "leave_one_out(model, X_train" in source_of(cell))
        assert [o["output_type"] for o in demo["outputs"]] == ["stream"], demo["outputs"]
        assert source_of({"source": demo["outputs"][0]["text"]}) == (
            "the demo needs poisoning.influence, which is not available while the notebook is graded\n")


@pytest.mark.slow
def test_feedback_shows_scores_and_messages_but_no_hidden_test(batch):
    root, _, _ = batch
    result = run_cli("feedback", ASSIGNMENT, cwd=root)
    assert result.returncode == 0, result.stderr
    for student, score in EXPECTED.items():
        html = (root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert f"Score: {score:.1f} / {AUTOGRADED_MAX + sum(WRITTEN_CELLS.values()):.1f}" in html
        # identifiers that only the hidden tests use (the HTML highlights code token by token)
        for name in ("check_cases", "cases_a", "hessian_reference_a", "problems_b", "agrees_with_leave_one_out_b",
                     "fit_theta_b", "perturbation_reference_c", "matches_retrained_finite_differences_c"):
            assert name not in html, (student, name)
    html = (root / "feedback" / "constsigma" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "11 of 11 checks failed; the first: perturbation_influence(" in html


# --------------------------------------------------------------------------------------------------
# fast: the source notebook
# --------------------------------------------------------------------------------------------------


def test_source_notebook_is_a_valid_nbgrader_assignment():
    # every hidden test also checks a judge against the ground truth
    helpers.check_source_notebook(SOURCE, HIDDEN_MODULES, TEST_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                                  hidden_cells_contain=["judge="])


@pytest.fixture(scope="module")
def student_functions():
    namespace = {"__name__": "__main__"}
    exec(PRELUDE, namespace)
    for code in solution_code().values():
        exec(compile(code, "<student cell>", "exec"), namespace)
    return namespace


def test_solution_signatures(student_functions):
    signatures = {name: str(inspect.signature(student_functions[name])) for name in STUDENT_FUNCTIONS}
    assert signatures == {
        "logistic_hessian": "(X, y, theta, l2)",
        "influence_on_params": "(X, y, theta, l2, index)",
        "influence_on_test_loss": "(X, y, theta, l2, x_test, y_test)",
        "perturbation_influence": "(X, y, theta, l2, x_test, y_test, index)",
    }


def library_function(name):
    """The reference library's version of the student's function ``name``, with θ given."""
    import poisoning.influence as inf

    def model(theta, l2):
        m = inf.LogisticModel(l2)
        m.theta_ = theta
        return m

    return {
        "logistic_hessian": lambda X, y, theta, l2: inf.LogisticModel(l2).hessian(X, y, theta),
        "influence_on_params": lambda X, y, theta, l2, index: inf.influence_on_params(
            model(theta, l2), X, y, [index])[0],
        "influence_on_test_loss": lambda X, y, theta, l2, x_test, y_test: inf.influence_on_test_loss(
            model(theta, l2), X, y, x_test, y_test),
        "perturbation_influence": lambda X, y, theta, l2, x_test, y_test, index: inf.input_gradient_of_test_loss(
            model(theta, l2), X, y, x_test, y_test, indices=[index])[0],
    }[name]


@pytest.mark.parametrize("seed, n, d, l2", [(0, 40, 3, 0.01), (1, 15, 30, 0.1), (2, 60, 8, 0.0)])
def test_solutions_agree_with_the_library(student_functions, seed, n, d, l2):
    from poisoning.influence import LogisticModel, removal_effect

    f = student_functions
    rng = np.random.default_rng(seed)
    y = rng.choice([-1, 1], size=n)
    X = rng.normal(size=(n, d)) + 0.3 * y[:, None]
    y[:3] *= -1  # not separable, so that λ = 0 has a minimiser
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticModel(l2).fit(X, y)
    theta, x_test, y_test = model.theta_, rng.normal(size=d), -1
    np.testing.assert_allclose(f["logistic_hessian"](X, y, theta, l2), model.hessian(X, y), rtol=1e-12, atol=1e-14)
    for index in (0, n // 2, n - 1):
        for name, args in [("influence_on_params", (X, y, theta, l2, index)),
                           ("perturbation_influence", (X, y, theta, l2, x_test, y_test, index))]:
            np.testing.assert_allclose(f[name](*args), library_function(name)(*args), rtol=1e-8, atol=1e-12)
    influence = f["influence_on_test_loss"](X, y, theta, l2, x_test, y_test)
    np.testing.assert_allclose(influence, library_function("influence_on_test_loss")(X, y, theta, l2, x_test, y_test),
                               rtol=1e-8, atol=1e-12)
    # removing a point is upweighting it by -1/n
    np.testing.assert_allclose(-influence / n, removal_effect(model, X, y, x_test, y_test), rtol=1e-8, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# fast: the checks the grader records from the source notebook
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan():
    import nbformat

    from grading.verdicts import record_plan

    return record_plan(nbformat.read(SOURCE, as_version=4))


def test_plan_has_every_test_cell_with_checks(plan):
    from grading import checks

    assert plan.points == {gid: float(points) for gid, points in TEST_CELLS.items()}
    assert list(plan.cells) == list(TEST_CELLS)
    assert plan.reference_modules == set()  # the references are callables that import the library when they run
    for gid, groups in plan.cells.items():
        assert groups and all(group.calls and len(group.calls) == len(group.judges) for group in groups), gid
        part_functions = FUNCTIONS[f"part_{gid.split('_')[2]}_solution"]
        assert {group.function for group in groups} == set(part_functions), gid
        kinds = [type(judge) for group in groups for judge in group.judges]
        # every cell compares with numbers and has a judge: of properties (visible), of the ground truth (hidden)
        assert set(kinds) == ({checks.Expect, checks.Judge} if gid != "test_part_c_visible" else {checks.Expect}), gid
        if gid.endswith("_hidden"):
            assert kinds.count(checks.Expect) >= 8 and kinds[-1] is checks.Judge, gid
    calls = {gid: sum(len(group.calls) for group in groups) for gid, groups in plan.cells.items()}
    assert calls == {"test_part_a_visible": 4, "test_part_a_hidden": 12, "test_part_b_visible": 4,
                     "test_part_b_hidden": 17, "test_part_c_visible": 4, "test_part_c_hidden": 11}
    tolerances = {gid: {(judge.rtol, judge.atol) for group in groups for judge in group.judges
                        if isinstance(judge, checks.Expect)} for gid, groups in plan.cells.items()}
    assert tolerances["test_part_a_hidden"] == {(1e-7, 1e-10)}
    assert tolerances["test_part_b_hidden"] == {(1e-6, 1e-8)}
    assert tolerances["test_part_c_hidden"] == {(1e-6, 1e-10)}
    # the hidden cases include random MNIST 1 vs 7 subsets with all 784 pixels (Parts B and C) or pooled (Part A)
    dimensions = {gid: {args[0].shape[1] for group in groups for args, _ in group.calls}
                  for gid, groups in plan.cells.items()}
    assert {16, 49} <= dimensions["test_part_a_hidden"]
    assert 784 in dimensions["test_part_b_hidden"] and 784 in dimensions["test_part_c_hidden"]
    helpers.check_plan_inputs(plan, TEST_CELLS)  # the seal gets the inputs only


def test_the_judged_problems_are_fitted_like_the_library(plan):
    """The hidden judges' θ̂, fitted in the cell by SciPy (the cell also runs in the seal), is the library's."""
    from poisoning.influence import LogisticModel

    for gid, l2 in (("test_part_b_hidden", 0.05), ("test_part_c_hidden", 0.05)):
        X, y, theta, given_l2 = plan.cells[gid][-1].calls[0][0][:4]
        assert given_l2 == l2
        assert np.max(np.abs(LogisticModel(l2).objective(X, y, theta)[1])) <= 1e-9, gid
        np.testing.assert_allclose(theta, LogisticModel(l2).fit(X, y).theta_, atol=1e-7)


def test_the_reference_and_the_solution_pass_every_recorded_check(plan, student_functions):
    """The visible expectations and the judges agree with the library, and the source notebook's solution passes
    everything."""
    from grading.checks import run_student

    for gid, groups in plan.cells.items():
        for group in groups:
            reference = library_function(group.function)
            for (args, kwargs), judge in zip(group.calls, group.judges):
                outcome = ("value", reference(*args, **kwargs))
                assert judge.problem(outcome, args, kwargs) is None, (gid, group.function, "library")
                outcome = run_student(student_functions[group.function], args, kwargs)
                assert outcome[0] == "value", (gid, group.function, outcome)
                assert judge.problem(outcome, args, kwargs) is None, (gid, group.function, "solution")


def test_recording_and_ground_truth_stay_fast():
    """The grader records the checks (MNIST, the library's fits and references) and computes the ground truth of
    the judges (the finite differences and the leave-one-out retraining) once per class: about 5 s here."""
    import nbformat

    from grading.verdicts import record_plan

    start = time.monotonic()
    fresh = record_plan(nbformat.read(SOURCE, as_version=4))
    recorded = time.monotonic() - start
    for groups in fresh.cells.values():
        for group in groups:
            for (args, kwargs), judge in zip(group.calls, group.judges):
                judge.problem(("value", library_function(group.function)(*args, **kwargs)), args, kwargs)
    total = time.monotonic() - start
    print(f"recording {recorded:.1f} s, with the ground truth {total:.1f} s")
    assert total < 20


def _verdicts(plan, namespace):
    """The grader's verdicts on the functions in ``namespace``, as if a seal had run them."""
    return plan.verdicts(helpers.seal_records(plan, namespace))


def functions_of(student):
    """The functions of one of the batch's submissions that fill in every solution cell (not the alias)."""
    namespace = {"__name__": "__main__"}
    exec(PRELUDE, namespace)
    for gid in SOLUTION_CELLS:
        exec(compile(submission_code()[student][gid], f"<{student} {gid}>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("student", [s for s, code in submission_code().items() if set(code) == set(SOLUTION_CELLS)
                                     and s != "alias"])
def test_verdicts_give_the_partial_scores(plan, student):
    """The plausible-wrong answers fail exactly their cells (the batch checks the same through the seal)."""
    verdicts = _verdicts(plan, functions_of(student))
    failed = sorted(gid for gid, (passed, _) in verdicts.items() if not passed)
    assert failed == sorted(FAILED_CELLS[student]), {gid: verdicts[gid][1] for gid in failed}
    assert sum(TEST_CELLS[gid] for gid, (passed, _) in verdicts.items() if passed) == EXPECTED[student]


def _judge(plan, gid, group=-1):
    """``(judge, args, kwargs, right output)`` of the judge of a test cell (its last check by default)."""
    group = plan.cells[gid][group]
    args, kwargs = group.calls[0]
    return group.judges[0], args, kwargs, library_function(group.function)(*args, **kwargs)


def test_the_judges_explain_what_is_wrong(plan):
    """Each judge says which property or which comparison with the ground truth failed."""
    def problem(judge, output, args, kwargs):
        return judge.problem(("value", output), args, kwargs)

    # Part A, visible: properties of the Hessian of three points in five dimensions
    judge, args, kwargs, right = _judge(plan, "test_part_a_visible")
    bias = np.zeros((6, 6))
    bias[-1, -1] = args[3]
    weights = args[3] * np.diag([1.0, 1, 1, 1, 1, 0])
    assert problem(judge, right, args, kwargs) is None
    assert problem(judge, right + bias, args, kwargs).endswith("(is λ added to the bias?)")
    assert "(is λ added to every weight?)" in problem(judge, right - weights, args, kwargs)
    assert problem(judge, right[:5, :5], args, kwargs).startswith("expected an array of shape (6, 6)")
    assert problem(judge, right + np.triu(right, 1), args, kwargs) == "a Hessian is symmetric"
    # Part A, hidden: central finite differences of the gradient of R
    judge, args, kwargs, right = _judge(plan, "test_part_a_hidden")
    assert problem(judge, right, args, kwargs) is None
    wrong = right.copy()
    wrong[-1, -1] += args[3]
    assert problem(judge, wrong, args, kwargs).startswith(
        "the Hessian differs from central finite differences of the gradient of R by up to 0.03")
    # Part B, visible: self-influence and a flipped copy
    judge, args, kwargs, right = _judge(plan, "test_part_b_visible")
    assert problem(judge, right, args, kwargs) is None
    assert problem(judge, -right, args, kwargs).startswith("the test point is training point 2")
    assert problem(judge, np.abs(right) * -1, args, kwargs).startswith("training point 6 is the test point")
    # Part B, hidden: leave-one-out retraining; the sign, the sum convention (n times too small), no Hessian
    judge, args, kwargs, right = _judge(plan, "test_part_b_hidden")
    X, y, theta, l2, x_test, y_test = args
    n = len(X)
    assert problem(judge, right, args, kwargs) is None
    assert problem(judge, -right, args, kwargs).startswith(
        "-(1/n) I_up,loss should predict how the test loss changes when each training point is removed and the model "
        "retrained: the correlation is only -0.99")
    assert "it is 0.0" in problem(judge, right / n, args, kwargs)
    from poisoning.influence import LogisticModel

    gradients = LogisticModel(l2).gradients(X, y, theta)
    test_gradient = LogisticModel(l2).gradients(x_test[None], [y_test], theta)[0]
    assert "the correlation is only 0.6" in problem(judge, -gradients @ test_gradient, args, kwargs)  # no Hessian
    hessnotinv = functions_of("hessnotinv")["influence_on_test_loss"](*args, **kwargs)
    assert "the correlation is only 0.1" in problem(judge, hessnotinv, args, kwargs)
    # Part C, hidden: finite differences of the retrained test loss; without 1/n, without the margin's derivative
    judge, args, kwargs, right = _judge(plan, "test_part_c_hidden")
    assert problem(judge, right, args, kwargs) is None
    assert problem(judge, n * right, args, kwargs).startswith(
        "moving the training point and retraining changes the test loss at another rate: the relative error of the "
        "gradient is 39")
    constsigma = functions_of("constsigma")["perturbation_influence"](*args, **kwargs)
    assert "the relative error of the gradient is 1.6" in problem(judge, constsigma, args, kwargs)
    assert "NotImplementedError" in judge.problem(("raised", "NotImplementedError", "", []), args, kwargs)
