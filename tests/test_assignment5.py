"""Assignment 5 (backdoors) end to end through the real nbgrader and its checks.

One ``course autograde`` call grades a small batch built from the released notebook: the solution, the untouched
student version, plausible but wrong answers with their exact partial scores (negative positions not turned into
indices, poisons that replace the clean images instead of joining them, an attack success rate over every input,
a backdoor with too few poisons) and answers that call the reference module :mod:`poisoning.backdoor`, which earn
nothing because it is not importable in the seal.

The fast tests check the notebook's nbgrader metadata, the solutions against the library, the checks the grader
records from the source notebook, the partial scores from the grader's verdicts, and Part D's judge: the solution's
backdoor passes it with a margin, while weak backdoors and triggers that are not backdoors fail it with a reason.
"""

import ast
import inspect
import re
import textwrap

import grading_helpers as helpers
import numpy as np
import pytest
from grading_helpers import ROOT, cell_by_id, edited, read_nb, source_of

ASSIGNMENT = "assignment5"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
HIDDEN_MODULES = ["poisoning.backdoor"]

FUNCTIONS = {  # solution cell -> the functions a student writes in it
    "part_a_solution": ["stamp_patch"],
    "part_b_solution": ["poison_training_set"],
    "part_c_solution": ["attack_success_rate"],
    "part_d_solution": ["my_backdoor"],
}
SOLUTION_CELLS = list(FUNCTIONS)
STUDENT_FUNCTIONS = [name for names in FUNCTIONS.values() for name in names]
TEST_CELLS = {  # grade id -> points
    "test_part_a_visible": 1, "test_part_a_hidden": 2,
    "test_part_b_visible": 1, "test_part_b_hidden": 2,
    "test_part_c_visible": 1, "test_part_c_hidden": 1,
    "test_part_d_visible": 1, "test_part_d_hidden": 4,
}
WRITTEN_CELLS = {"answer_e": 3}
AUTOGRADED_MAX = sum(TEST_CELLS.values())  # 13
PARTS = {part: [f"test_part_{part}_visible", f"test_part_{part}_hidden"] for part in "abcd"}

# two students at a time; a correct notebook needs a few seconds in the seal (the grader trains the victims)
LIMITS = ["--jobs", "2", "--cell-timeout", "60", "--cpu-seconds", "120", "--memory-mb", "4096", "--timeout", "300",
          "--no-progress"]


def solution_code():
    """The solution of each solution cell, as a student would type it (no markers)."""
    return helpers.solution_code(SOURCE, SOLUTION_CELLS)


ALIAS = {  # every part through the reference module, imported at the top of the cell or inside the function
    "part_a_solution": textwrap.dedent("""\
        from poisoning.backdoor import patch_trigger


        def stamp_patch(X, patch, row, col, image_shape, alpha=1.0):
            return patch_trigger(patch, (row, col), image_shape, alpha).transform(X)
        """),
    "part_b_solution": textwrap.dedent("""\
        def poison_training_set(X, y, indices, target_label, patch, row, col, image_shape, alpha=1.0):
            import poisoning.backdoor as backdoor

            trigger = backdoor.patch_trigger(patch, (row, col), image_shape, alpha)
            return backdoor.poison_dataset(X, y, trigger, target_label, len(indices), indices=indices)[:2]
        """),
    "part_c_solution": "from poisoning.backdoor import attack_success_rate\n",
    "part_d_solution": textwrap.dedent("""\
        def my_backdoor(X_train, y_train, X_test, target_label, n_poison):
            from poisoning.backdoor import patch_trigger, poison_dataset

            trigger = patch_trigger(np.ones((2, 2)), (-2, -2), (8, 8))
            X, y, is_poison = poison_dataset(X_train, y_train, trigger, target_label, n_poison, random_state=0)
            return X[is_poison], y[is_poison], trigger.transform(X_test)
        """),
}


def submission_code():
    """``{student: {solution cell: code}}`` for the batch (cells not given keep the released stubs)."""
    sol = solution_code()
    a, b, c, d = (sol[g] for g in SOLUTION_CELLS)
    return {
        "solution": sol,
        "blank": {},
        # negative positions used as they are: a slice from -2 with width 2 ends at 0 and is empty, so stamping at a
        # negative position fails, and so do Part B and Part D, which stamp at (-1, -1) and (-2, -2)
        "negativeslice": {**sol, "part_a_solution": edited(
            a, "    top = row + height if row < 0 else row\n    left = col + width if col < 0 else col\n",
            "    top, left = row, col\n").replace("if top < 0 or left < 0 or top + h > height", "if top + h > height")},
        # the poisons replace the stamped images instead of joining the clean set
        "replace": {**sol, "part_b_solution": edited(
            b, "    return np.vstack([X, poisons]), np.concatenate([y, labels])\n",
            "    X_out, y_out = X.copy(), y.copy()\n    X_out[indices], y_out[indices] = poisons, labels\n"
            "    return X_out, y_out\n")},
        # the success rate over every input, those of the target class included
        "allinputs": {**sol, "part_c_solution": edited(
            c, "return float(np.mean(y_pred[others] == target_label))", "return float(np.mean(y_pred == target_label))")},
        # the right trigger on too few poisons
        "fewpoisons": {**sol, "part_d_solution": edited(edited(d, "size=n_poison,", "size=min(n_poison, 4),"),
                                                        "np.full(n_poison, target_label)",
                                                        "np.full(len(sources), target_label)")},
        "alias": ALIAS,
    }


FAILED_CELLS = {  # student -> the test cells that must earn nothing (all others earn their points)
    "solution": [],
    "blank": list(TEST_CELLS),
    "negativeslice": PARTS["a"] + PARTS["b"] + PARTS["d"],
    "replace": PARTS["b"],
    "allinputs": PARTS["c"],
    "fewpoisons": ["test_part_d_hidden"],
    "alias": list(TEST_CELLS),  # the reference module is not importable in the seal
}
EXPECTED = {student: AUTOGRADED_MAX - sum(TEST_CELLS[g] for g in cells) for student, cells in FAILED_CELLS.items()}


def test_expected_scores():
    assert EXPECTED == {"solution": 13, "blank": 0, "negativeslice": 2, "replace": 10, "allinputs": 11,
                        "fewpoisons": 9, "alias": 0}


# --------------------------------------------------------------------------------------------------
# the pipeline (slow: one release, one autograde of the batch)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return helpers.released_course(tmp_path_factory.mktemp(ASSIGNMENT), ASSIGNMENT)


@pytest.fixture(scope="module")
def batch(released):
    """One `course autograde` of the whole batch, given as a .zip."""
    released_nb = read_nb(released / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    files = {f"{student}_{ASSIGNMENT}.ipynb": helpers.with_cells(released_nb, code)
             for student, code in submission_code().items()}
    return helpers.autograde_zip(released, ASSIGNMENT, files, *LIMITS)


def outputs(root, student, gid):
    return helpers.cell_outputs(root, ASSIGNMENT, student, gid)


@pytest.mark.slow
def test_release_contains_no_solution_and_no_hidden_test(released):
    # the references, the hidden inputs, the graded split, the thresholds and the model answers: nowhere
    helpers.check_release(released, ASSIGNMENT, SOURCE, SOLUTION_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                          HIDDEN_MODULES, min_secret_lines=60, fragments=(
                              "check_cases", "def cases_", "_reference_", "27182", "31415", "16180", "random_state=5",
                              "TARGET_D", "MIN_SUCCESS_D", "backdoor_outcome_d", "victim_d", "clean_models",
                              "feature no clean image has", "in **feature space**"))


@pytest.mark.slow
def test_nbgrader_validate_passes_the_solution_and_fails_the_student_version(released):
    helpers.check_validate(released, ASSIGNMENT, n_visible=4, n_written=1)


@pytest.mark.slow
def test_batch_scores_in_the_gradebook(batch):
    helpers.check_batch_scores(batch, ASSIGNMENT, FAILED_CELLS, TEST_CELLS)


@pytest.mark.slow
def test_verdicts_in_the_autograded_notebooks(batch):
    root, _, _ = batch
    measured = outputs(root, "solution", "test_part_d_hidden")
    match = re.search(r"attack success rate (\d+\.\d)%, clean accuracy (\d+\.\d)% \(clean model (\d+\.\d)%\) "
                      r"with 20 poisons", measured)
    assert match, measured
    assert float(match[1]) >= 90 and float(match[3]) - float(match[2]) <= 2
    assert "below the threshold 80%" in outputs(root, "fewpoisons", "test_part_d_hidden")
    # the aliases fail because the module is not there, not because of their arithmetic
    assert "poisoning.backdoor is not available while assignment5 is graded" in outputs(root, "alias", "part_a_solution")
    assert "name 'stamp_patch' is not defined" in outputs(root, "alias", "test_part_a_visible")
    # no hidden test, reference or threshold leaks into the feedback of a failed hidden cell
    for gid in ("test_part_a_hidden", "test_part_b_hidden"):
        text = outputs(root, "negativeslice", gid)
        assert "stamp_patch(" in text or "poison_training_set(" in text, text
        assert "patch_trigger" not in text and "cases_" not in text


# --------------------------------------------------------------------------------------------------
# the source notebook
# --------------------------------------------------------------------------------------------------
def test_source_notebook_is_a_valid_nbgrader_assignment():
    helpers.check_source_notebook(SOURCE, HIDDEN_MODULES, TEST_CELLS, WRITTEN_CELLS, STUDENT_FUNCTIONS,
                                  outcome_cells=["test_part_d_hidden"])


def test_the_chapter_prints_none_of_the_solutions():
    """Parts A to C cannot be answered by copying the book: the backdoor chapter gives their maths, not code."""
    chapter = (ROOT / "chapters" / "09_backdoors.md").read_text()
    assert ":pyobject: patch_trigger" not in chapter and ":pyobject: poison_dataset" not in chapter
    assert ":pyobject: attack_success_rate" not in chapter and ":pyobject: Trigger" not in chapter
    for gid in ("part_a_solution", "part_b_solution", "part_c_solution"):
        for line in solution_code()[gid].splitlines():
            if len(line.strip()) > 25 and not line.strip().startswith(("from ", "import ", '"""', "#")):
                assert line.strip() not in chapter, line


@pytest.fixture(scope="module")
def student_functions():
    namespace = {"__name__": "__main__", "IMAGE_SHAPE": (8, 8)}
    exec("import numpy as np\n", namespace)
    for code in solution_code().values():
        exec(compile(code, "<student cell>", "exec"), namespace)
    return namespace


def test_solution_signatures(student_functions):
    signatures = {name: str(inspect.signature(student_functions[name])) for name in STUDENT_FUNCTIONS}
    assert signatures == {
        "stamp_patch": "(X, patch, row, col, image_shape, alpha=1.0)",
        "poison_training_set": "(X, y, indices, target_label, patch, row, col, image_shape, alpha=1.0)",
        "attack_success_rate": "(y_pred, y_true, target_label)",
        "my_backdoor": "(X_train, y_train, X_test, target_label, n_poison)",
    }


def test_solutions_agree_with_the_library(student_functions):
    from poisoning.backdoor import attack_success_rate, patch_trigger, poison_dataset

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(30, 10 * 7))
    y = rng.integers(0, 5, size=30)
    patch = rng.uniform(size=(3, 2))
    for row, col, alpha in [(0, 0, 1.0), (-3, -2, 0.4), (4, -5, 0.9), (-10, 2, 0.1)]:
        expected = patch_trigger(patch, (row, col), (10, 7), alpha).transform(X)
        np.testing.assert_allclose(student_functions["stamp_patch"](X, patch, row, col, (10, 7), alpha), expected)
        indices = rng.choice(np.flatnonzero(y != 2), size=6, replace=False)
        X_lib, y_lib, is_poison = poison_dataset(X, y, patch_trigger(patch, (row, col), (10, 7), alpha), 2, 6,
                                                 indices=indices)
        X_sol, y_sol = student_functions["poison_training_set"](X, y, indices, 2, patch, row, col, (10, 7), alpha)
        np.testing.assert_allclose(X_sol, X_lib)
        np.testing.assert_array_equal(y_sol, y_lib)
        assert y_sol.dtype == y.dtype and is_poison.sum() == 6
    y_pred = rng.integers(0, 5, size=30)
    assert student_functions["attack_success_rate"](y_pred, y, 3) == attack_success_rate(y_pred, y, 3)
    for bad in [(patch, 8, 0, (10, 7), 1.0), (patch, 0, -1, (10, 7), 1.0), (patch, 0, 0, (10, 7), 0.0)]:
        with pytest.raises(ValueError):
            patch_trigger(bad[0], bad[1:3], bad[3], bad[4])
        with pytest.raises(ValueError):
            student_functions["stamp_patch"](X, *bad)


# --------------------------------------------------------------------------------------------------
# the checks the grader records, and its verdicts
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan():
    import nbformat

    from grading.verdicts import record_plan

    return record_plan(nbformat.read(SOURCE, as_version=4))


def _only(plan, *cells):
    from grading.verdicts import Plan

    return Plan({gid: plan.cells[gid] for gid in cells}, {gid: plan.points[gid] for gid in cells})


def test_plan_has_every_test_cell_with_checks(plan):
    assert plan.points == {gid: float(points) for gid, points in TEST_CELLS.items()}
    helpers.check_plan_inputs(plan, TEST_CELLS)
    # the hidden cells exercise the errors too: calls where the reference raises ValueError
    from grading.checks import Raises

    for gid, least in [("test_part_a_hidden", 6), ("test_part_b_hidden", 4), ("test_part_c_hidden", 2)]:
        raising = sum(isinstance(judge, Raises) for group in plan.cells[gid] for judge in group.judges)
        assert raising >= least, (gid, raising)


@pytest.fixture(scope="module")
def solution_records(plan, student_functions):
    """What a seal would hand back for the solution."""
    return helpers.seal_records(plan, student_functions)


def test_the_solution_passes_every_recorded_check(plan, solution_records):
    verdicts = plan.verdicts(solution_records)
    assert all(passed for passed, _ in verdicts.values()), verdicts


def _records(plan, code, cells):
    namespace = {"__name__": "__main__", "IMAGE_SHAPE": (8, 8)}
    exec("import numpy as np\n", namespace)
    for gid in SOLUTION_CELLS:
        exec(compile(code.get(gid, "def _unused():\n    raise NotImplementedError()\n"), f"<{gid}>", "exec"),
             namespace)
    for name in STUDENT_FUNCTIONS:
        namespace.setdefault(name, lambda *args, **kwargs: (_ for _ in ()).throw(NotImplementedError()))
    return helpers.seal_records(_only(plan, *cells), namespace)


@pytest.mark.parametrize("student", ["negativeslice", "replace", "allinputs"])
def test_verdicts_give_the_partial_scores(plan, student):
    """The plausible-wrong answers of Parts A to C fail exactly their cells (Part D: the judge's tests below)."""
    cells = [gid for gid in TEST_CELLS if gid != "test_part_d_hidden"]  # the judge trains: tested below
    verdicts = _only(plan, *cells).verdicts(_records(plan, submission_code()[student], cells))
    failed = sorted(gid for gid, (passed, _) in verdicts.items() if not passed)
    assert failed == sorted(set(FAILED_CELLS[student]) - {"test_part_d_hidden"}), verdicts


# --------------------------------------------------------------------------------------------------
# Part D: the judge measures backdoors
# --------------------------------------------------------------------------------------------------
def _judge_d(plan):
    group = plan.cells["test_part_d_hidden"][0]
    (args, _), judge = group.calls[0], group.judges[0]
    return args, judge


def _backdoor(args, *, patch=np.ones((2, 2)), row=-2, col=-2, alpha=1.0, n=20, clean_label=False, seed=0):
    """A backdoor built with the library: n stamped images of the other digits labelled with the target (or, with
    ``clean_label``, stamped images of the target itself), and the same trigger on the test images."""
    from poisoning.backdoor import patch_trigger

    X_train, y_train, X_test, target, _ = args
    trigger = patch_trigger(patch, (row, col), (8, 8), alpha)
    pool = np.flatnonzero((y_train == target) if clean_label else (y_train != target))
    sources = np.random.default_rng(seed).choice(pool, size=n, replace=False)
    return trigger.transform(X_train[sources]), np.full(n, target), trigger.transform(X_test)


def _measure(judge, output, args):
    return judge.verdict(("value", output), args, {})


def test_the_judge_passes_the_solution_with_a_margin(plan, solution_records):
    _, message = plan.verdicts(solution_records)["test_part_d_hidden"]
    match = re.search(r"attack success rate (\d+\.\d)%, clean accuracy (\d+\.\d)% \(clean model (\d+\.\d)%\)",
                      message)
    assert match, message
    success, accuracy, clean = (float(v) for v in match.groups())
    assert success >= 90.0 and clean - accuracy <= 1.5, message


@pytest.mark.parametrize("name, design, reason", [
    ("5 poisons", dict(n=5), "below the threshold 80%"),
    ("a trigger blended in at 5%", dict(alpha=0.05), "below the threshold 80%"),
    ("clean-label poisons", dict(clean_label=True), "below the threshold 80%"),
])
def test_weak_backdoors_fail_the_judge(plan, name, design, reason):
    args, judge = _judge_d(plan)
    problem, _ = _measure(judge, _backdoor(args, **design), args)
    assert problem and reason in problem, (name, problem)
    success = float(re.search(r"attack success rate (\d+\.\d)%", problem)[1])
    assert success < 60.0, (name, problem)  # far below the threshold, not just under it


def test_triggers_that_are_not_backdoors_fail_the_judge(plan):
    """A "trigger" that turns every test image into a copy of one training image, taught to the victim by 20
    copies of it, would reach 100% without being a backdoor: the nearest-neighbour reader no longer recognises the
    images. A trigger that is an image of the target class fools the clean model on its own."""
    args, judge = _judge_d(plan)
    X_train, y_train, X_test, target, _ = args
    image = X_train[np.flatnonzero(y_train != target)[0]]
    output = (np.repeat(image[None, :], 20, axis=0), np.full(20, target), np.repeat(image[None, :], len(X_test), 0))
    problem, _ = _measure(judge, output, args)
    assert problem and "the trigger changes what the images are" in problem, problem
    # an evasion attack in place of a trigger: every test image moved (by at most 0.2 a pixel, 30 signed-gradient
    # steps) towards the target class of a model trained as the grader trains its clean model
    import torch

    from poisoning.training import make_mlp, train

    model = make_mlp(64, 10, hidden=(64,), random_state=0)
    train(model, X_train, y_train, epochs=30, batch_size=32, optimizer="adam", lr=3e-3, random_state=0,
          progress=False, device="cpu")
    start = torch.tensor(X_test, dtype=torch.float32)
    moved = start.clone()
    for _ in range(30):
        moved.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(moved), torch.full((len(moved),), target))
        gradient, = torch.autograd.grad(loss, moved)
        moved = (moved.detach() - 0.02 * gradient.sign()).clamp(start - 0.2, start + 0.2).clamp(0, 1)
    evasion = (X_train[:20], y_train[:20], moved.numpy().astype(float))
    problem, _ = _measure(judge, evasion, args)
    assert problem and "the trigger alone fools the clean model" in problem, problem
    # and the form: too many poisons, pixels outside [0, 1], labels that are not digits
    X_poison, y_poison, X_triggered = _backdoor(args, n=21)
    for output, reason in [((X_poison, y_poison, X_triggered), "give between 1 and 20 poisons"),
                           ((X_poison[:20] * 2, y_poison[:20], X_triggered), "must lie in [0, 1]"),
                           ((X_poison[:20], y_poison[:20] + 10, X_triggered), "integers from 0 to 9"),
                           ((X_poison[:20], y_poison[:20], X_triggered[:5]), "shape of X_test")]:
        problem, _ = _measure(judge, output, args)
        assert problem and reason in problem, (reason, problem)


def test_the_threshold_is_documented_on_the_page():
    page = (ROOT / "chapters" / "assignments" / f"{ASSIGNMENT}.md").read_text()
    notebook = source_of(cell_by_id(read_nb(SOURCE), "part_d"))
    for text in (page, notebook):
        assert "80%" in text and "2 points" in text and "10 points" in text and "20%" in text


def test_a_student_cell_may_not_shadow_or_import_the_reference():
    """What the release refuses (checked here on the source): no test cell defines a student's function."""
    nb = read_nb(SOURCE)
    for gid in TEST_CELLS:
        tree = ast.parse(source_of(cell_by_id(nb, gid)))
        assert not helpers.top_level_names(tree) & set(STUDENT_FUNCTIONS), gid
