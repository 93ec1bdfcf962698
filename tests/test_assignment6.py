"""Assignment 6 (certified defences) end to end through the real nbgrader and its checks.

One ``course autograde`` call grades a small batch built from the released notebook: the solution, the untouched
student version, plausible but wrong answers with their exact partial scores (pixel values truncated instead of
rounded, ties broken towards the larger class, the gap of Finite Aggregation taken against the plurality vote when
the true class is given, the deltas in ascending order) and answers that call the reference module
:mod:`poisoning.certified`, which earn nothing because it is not importable in the seal. The fast tests check the
notebook's metadata, the solutions against the library and against brute force (no set of that many changed votes
flips a certified prediction), the checks the grader records, and the partial scores from the grader's verdicts.
"""

import inspect
import itertools
import textwrap

import grading_helpers as helpers
import numpy as np
import pytest
from grading_helpers import ROOT, cell_by_id, edited, read_nb, source_of

ASSIGNMENT = "assignment6"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
HIDDEN_MODULES = ["poisoning.certified"]
FUNCTIONS = {"part_a_solution": ["dpa_partition"], "part_b_solution": ["dpa_certificate"],
             "part_c_solution": ["fa_certificate"]}
SOLUTION_CELLS = list(FUNCTIONS)
STUDENT_FUNCTIONS = [name for names in FUNCTIONS.values() for name in names]
TEST_CELLS = {"test_part_a_visible": 1, "test_part_a_hidden": 2, "test_part_b_visible": 1, "test_part_b_hidden": 3,
              "test_part_c_visible": 1, "test_part_c_hidden": 3}
WRITTEN_CELLS = {"answer_d": 3}
AUTOGRADED_MAX = sum(TEST_CELLS.values())  # 11
PARTS = {part: [f"test_part_{part}_visible", f"test_part_{part}_hidden"] for part in "abc"}
LIMITS = ["--jobs", "2", "--cell-timeout", "60", "--cpu-seconds", "120", "--memory-mb", "4096", "--timeout", "300",
          "--no-progress"]


def solution_code():
    return helpers.solution_code(SOURCE, SOLUTION_CELLS)


ALIAS = {
    "part_a_solution": "from poisoning.certified import dpa_partition\n",
    "part_b_solution": textwrap.dedent("""\
        def dpa_certificate(votes, y_true=None):
            import poisoning.certified

            return poisoning.certified.dpa_certificate(votes, y_true)
        """),
    "part_c_solution": textwrap.dedent("""\
        def fa_certificate(learner_predictions, shifts, n_classes, y_true=None):
            from poisoning.certified import fa_certificate as reference

            return reference(learner_predictions, shifts, n_classes, y_true)
        """),
}


def submission_code():
    sol = solution_code()
    a, b, c = (sol[g] for g in SOLUTION_CELLS)
    return {
        "solution": sol,
        "blank": {},
        # pixel values truncated as the official code does: 0.2 * 255 = 50.999... counts as 50
        "truncate": {**sol, "part_a_solution": edited(a, "np.rint(255 * X)", "np.floor(255 * X)")},
        # ties broken towards the larger class: the last maximum
        "largertie": {**sol, "part_b_solution": edited(
            b, "prediction = np.argmax(votes, axis=1)", "prediction = n_classes - 1 - np.argmax(votes[:, ::-1], axis=1)")},
        # the smallest deltas first: counts too many samples
        "ascending": {**sol, "part_c_solution": edited(c, "deltas = -np.sort(-deltas, axis=1)",
                                                      "deltas = np.sort(deltas, axis=1)")},
        "alias": ALIAS,
    }


FAILED_CELLS = {"solution": [], "blank": list(TEST_CELLS), "truncate": PARTS["a"], "largertie": PARTS["b"],
                "ascending": PARTS["c"], "alias": list(TEST_CELLS)}
EXPECTED = {student: AUTOGRADED_MAX - sum(TEST_CELLS[g] for g in cells) for student, cells in FAILED_CELLS.items()}


def test_expected_scores():
    assert EXPECTED == {"solution": 11, "blank": 0, "truncate": 8, "largertie": 7, "ascending": 7, "alias": 0}


# --------------------------------------------------------------------------------------------------
# the pipeline (slow: one release, one autograde of the batch)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return helpers.released_course(tmp_path_factory.mktemp(ASSIGNMENT), ASSIGNMENT)


@pytest.fixture(scope="module")
def batch(released):
    released_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    files = {f"{student}_{ASSIGNMENT}.ipynb": helpers.with_cells(released_nb, code)
             for student, code in submission_code().items()}
    return helpers.autograde_zip(released, ASSIGNMENT, files, *LIMITS)


@pytest.mark.slow
def test_release_contains_no_solution_and_no_hidden_test(released):
    helpers.check_release(released, ASSIGNMENT, SOURCE, SOLUTION_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                          HIDDEN_MODULES, min_secret_lines=40, fragments=(
                              "check_cases", "def cases_", "14142", "17320", "22360", "fa_shifts", "np.cumsum(",
                              "half the vote margin"))


@pytest.mark.slow
def test_nbgrader_validate_passes_the_solution_and_fails_the_student_version(released):
    helpers.check_validate(released, ASSIGNMENT, n_visible=3, n_written=1)


@pytest.mark.slow
def test_batch_scores_in_the_gradebook(batch):
    helpers.check_batch_scores(batch, ASSIGNMENT, FAILED_CELLS, TEST_CELLS)


# --------------------------------------------------------------------------------------------------
# the source notebook, the solutions, the recorded checks
# --------------------------------------------------------------------------------------------------
def test_source_notebook_is_a_valid_nbgrader_assignment():
    helpers.check_source_notebook(SOURCE, HIDDEN_MODULES, TEST_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS)


def test_the_book_prints_none_of_the_solutions():
    pages = "\n".join(path.read_text() for path in (ROOT / "chapters").glob("*.md"))
    for name in ("dpa_partition", "dpa_certificate", "fa_certificate", "content_hash"):
        assert f":pyobject: {name}" not in pages
    for line in "\n".join(solution_code().values()).splitlines():
        if len(line.strip()) > 25 and not line.strip().startswith(("from ", "import ", '"""', "#")):
            assert line.strip() not in pages, line


@pytest.fixture(scope="module")
def student_functions():
    namespace = {"__name__": "__main__"}
    exec("import numpy as np\n", namespace)
    for code in solution_code().values():
        exec(compile(code, "<student cell>", "exec"), namespace)
    return namespace


def test_solution_signatures(student_functions):
    assert {name: str(inspect.signature(student_functions[name])) for name in STUDENT_FUNCTIONS} == {
        "dpa_partition": "(X, k)", "dpa_certificate": "(votes, y_true=None)",
        "fa_certificate": "(learner_predictions, shifts, n_classes, y_true=None)"}


def test_solutions_agree_with_the_library(student_functions):
    from poisoning.certified import dpa_certificate, dpa_partition, fa_certificate, fa_shifts

    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(50, 20)) / 255
    np.testing.assert_array_equal(student_functions["dpa_partition"](X, 7), dpa_partition(X, 7))
    votes = rng.integers(0, 6, size=(60, 4))
    y = rng.integers(0, 4, size=60)
    for y_true in (None, y):
        np.testing.assert_array_equal(student_functions["dpa_certificate"](votes, y_true), dpa_certificate(votes, y_true))
    for k, d in [(6, 1), (5, 2), (4, 3)]:
        predictions = np.where(rng.uniform(size=(40, k * d)) < 0.7, y[:40, None], rng.integers(-1, 4, (40, k * d)))
        for y_true in (None, y[:40]):
            np.testing.assert_array_equal(student_functions["fa_certificate"](predictions, fa_shifts(k, d), 4, y_true),
                                          fa_certificate(predictions, fa_shifts(k, d), 4, y_true))
        if d == 1:  # Finite Aggregation with d = 1 is DPA
            table = np.stack([(predictions == c).sum(axis=1) for c in range(4)], axis=1)
            np.testing.assert_array_equal(student_functions["fa_certificate"](predictions, [0], 4),
                                          student_functions["dpa_certificate"](table))


def test_the_dpa_certificate_is_sound_and_tight_by_brute_force(student_functions):
    """Every way of changing rho base classifiers' votes keeps the prediction; some change of rho + 1 flips it."""
    rng = np.random.default_rng(2)
    certify = student_functions["dpa_certificate"]
    for _ in range(30):
        k, n_classes = int(rng.integers(3, 8)), int(rng.integers(2, 4))
        predictions = rng.integers(0, n_classes, size=k)
        table = np.bincount(predictions, minlength=n_classes)[None, :]
        rho, g = int(certify(table)[0]), int(np.argmax(table))
        flips = []
        for size in (rho, rho + 1):  # one poisoned sample changes one base classifier (insertion or removal)
            changed = False
            for members in itertools.combinations(range(k), min(size, k)):
                for labels in itertools.product(range(n_classes), repeat=len(members)):
                    moved = predictions.copy()
                    moved[list(members)] = labels
                    changed |= int(np.argmax(np.bincount(moved, minlength=n_classes))) != g
            flips.append(changed)
        assert flips[0] is False, (predictions, rho)
        assert flips[1] is True or rho + 1 > k, (predictions, rho)


@pytest.fixture(scope="module")
def plan():
    import nbformat

    from grading.verdicts import record_plan

    return record_plan(nbformat.read(SOURCE, as_version=4))


def test_the_solution_passes_every_recorded_check(plan, student_functions):
    assert plan.points == {gid: float(points) for gid, points in TEST_CELLS.items()}
    helpers.check_plan_inputs(plan, TEST_CELLS)
    verdicts = plan.verdicts(helpers.seal_records(plan, student_functions))
    assert all(passed for passed, _ in verdicts.values()), verdicts


@pytest.mark.parametrize("student", ["truncate", "largertie", "ascending"])
def test_verdicts_give_the_partial_scores(plan, student):
    namespace = {"__name__": "__main__"}
    exec("import numpy as np\n", namespace)
    for code in submission_code()[student].values():
        exec(compile(code, f"<{student}>", "exec"), namespace)
    verdicts = plan.verdicts(helpers.seal_records(plan, namespace))
    assert sorted(gid for gid, (passed, _) in verdicts.items() if not passed) == sorted(FAILED_CELLS[student]), verdicts


def test_the_written_question_and_the_page():
    question = source_of(cell_by_id(read_nb(SOURCE), "part_d"))
    assert "accuracy" in question and "Finite Aggregation" in question
    page = (ROOT / "chapters" / "assignments" / f"{ASSIGNMENT}.md").read_text()
    for name in STUDENT_FUNCTIONS:
        assert f"`{name}(" in page
