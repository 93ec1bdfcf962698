"""Assignment 1, Part D (an attack on the trimmed mean of the student's design, graded by its outcome), and what the
book shows of the assignment's answers.

The grader's judge measures how far the student's poisons move the trimmed mean on seven hidden data sets and
compares it with the damage of the library's reference attack (``poisoning.mean_estimation.trimmed_mean_attack``),
whose values the hidden test records. Here, without any seal: the recorded values are the library's; the model
solution passes both hidden tests with a margin; weaker attacks earn exactly their partial points, with the
measured percentage in the verdict; poisons of the wrong form or outside the radius fail with a reason. The pipeline
(release, autograde, feedback, the scores of whole submissions) is tested in ``test_grading_pipeline.py``.
"""

import re

import grading_helpers as helpers
import numpy as np
import pytest
from grading_helpers import ROOT, cell_by_id, read_nb, source_of

ASSIGNMENT = "assignment1"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
FUNCTIONS = {"part_a_solution": ["distance_filter", "filtered_mean"], "part_b_solution": ["adaptive_attack"],
             "part_c_solution": ["trimmed_mean"], "part_d_solution": ["attack_trimmed_mean"]}
SOLUTION_CELLS = list(FUNCTIONS)
PART_D = ["test_part_d_visible", "test_part_d_hidden", "test_part_d_strong_hidden"]
POINTS_D = {"test_part_d_visible": 1, "test_part_d_hidden": 2, "test_part_d_strong_hidden": 2}


def solution_code():
    return helpers.solution_code(SOURCE, SOLUTION_CELLS)


# --------------------------------------------------------------------------------------------------
# the book
# --------------------------------------------------------------------------------------------------
def test_the_book_prints_none_of_the_solutions():
    """The chapters give the filter, the attack and the trimmed mean as mathematics, not as the code to copy."""
    pages = "\n".join(path.read_text() for path in (ROOT / "chapters").glob("*.md"))
    for name in ("distance_filter", "filtered_mean", "adaptive_attack", "trimmed_mean", "trimmed_mean_attack",
                 "trimmed_mean_shift_bound"):
        assert f":pyobject: {name}\n" not in pages, name
    for line in "\n".join(solution_code().values()).splitlines():
        if len(line.strip()) > 25 and not line.strip().startswith(("from ", "import ", '"""', "#")):
            assert line.strip() not in pages, line


def test_part_d_is_described_on_the_page_and_in_the_notebook():
    page = (ROOT / "chapters" / "assignments" / f"{ASSIGNMENT}.md").read_text()
    notebook = source_of(cell_by_id(read_nb(SOURCE), "part_d"))
    for text in (page, notebook):
        assert "`attack_trimmed_mean(X_clean, n_poison, trim_fraction, radius)`" in text
        assert "50%" in text and "80%" in text and "median" in text and "radius" in text
    assert "| D, " in page and "| E, " in page and "| 5, autograded by its outcome |" in page


# --------------------------------------------------------------------------------------------------
# the hidden cases and the reference's damage they record
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hidden():
    """The namespace of Part D's visible and first hidden test cell, run without the check API."""
    nb = read_nb(SOURCE)
    namespace = {"np": np, "check": lambda *args, **kwargs: None, "attack_trimmed_mean": None}
    for gid in ("test_part_d_visible", "test_part_d_hidden"):
        exec(compile(source_of(cell_by_id(nb, gid)), f"<{gid}>", "exec"), namespace)
    return namespace


def test_the_recorded_damages_are_the_reference_attack_s(hidden):
    from poisoning.mean_estimation import trimmed_mean_attack

    cases, recorded = hidden["CASES_D"], hidden["REFERENCE_DAMAGE_D"]
    assert len(cases) == len(recorded) == 7
    assert (hidden["HALF_D"], hidden["MOST_D"]) == (0.5, 0.8)
    for (X, n_poison, trim_fraction, radius), value in zip(cases, recorded):
        measured = hidden["damage_d"](X, trimmed_mean_attack(X, n_poison, trim_fraction, radius), trim_fraction)
        assert measured == pytest.approx(value, rel=5e-6)


def test_the_hidden_cases_are_what_the_notebook_says(hidden):
    """2 to 30 dimensions, 120 to 400 clean points, 3% to 9% poisons, trim fractions 0.05 to 0.2 and at least the
    fraction of poisons (so far outliers would be cut), the radius the median distance to the clean median."""
    dimensions = []
    for X, n_poison, trim_fraction, radius in hidden["CASES_D"]:
        n, d = X.shape
        dimensions.append(d)
        assert 120 <= n <= 400 and 0.03 <= n_poison / (n + n_poison) <= 0.095
        assert 0.05 <= trim_fraction <= 0.2 and trim_fraction >= n_poison / (n + n_poison)
        assert radius == np.median(np.linalg.norm(X - np.median(X, axis=0), axis=1))
    assert min(dimensions) == 2 and max(dimensions) == 30


# --------------------------------------------------------------------------------------------------
# the verdicts on attacks
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan():
    import nbformat

    from grading.verdicts import Plan, record_plan

    full = record_plan(nbformat.read(SOURCE, as_version=4))
    assert {gid: full.points[gid] for gid in PART_D} == POINTS_D
    return Plan({gid: full.cells[gid] for gid in PART_D}, {gid: full.points[gid] for gid in PART_D})


def verdicts(plan, attack):
    """The grader's verdicts on Part D's test cells for the student function ``attack``."""
    return plan.verdicts(helpers.seal_records(plan, {"attack_trimmed_mean": attack}))


def percentages(message):
    return [float(p) for p in re.findall(r"(\d+\.\d)% of the reference attack's damage", message)]


def model_solution():
    namespace = {"np": np, "__name__": "__main__"}
    exec(solution_code()["part_d_solution"], namespace)
    return namespace["attack_trimmed_mean"]


def test_the_model_solution_passes_both_hidden_tests_with_a_margin(plan):
    # it stands alone: a wrong Part B or C does not cost Part D's points (a student's attack may use them)
    code = solution_code()["part_d_solution"]
    assert not re.search(r"(?<!\w)(trimmed_mean|adaptive_attack|distance_filter|filtered_mean)\(", code)
    result = verdicts(plan, model_solution())
    assert all(passed for passed, _ in result.values()), result
    for gid in ("test_part_d_hidden", "test_part_d_strong_hidden"):
        got = percentages(result[gid][1])
        assert len(got) == 7 and min(got) >= 95.0, result[gid]


def one_point(direction):
    """An attack that puts every poison at the clean median plus ``radius`` times the unit vector of ``direction``
    (a function of the clean data)."""
    def attack(X_clean, n_poison, trim_fraction, radius):
        u = np.asarray(direction(X_clean), dtype=float)
        return np.tile(np.median(X_clean, axis=0) + radius * u / np.linalg.norm(u), (n_poison, 1))
    return attack


def random_directions(X_clean, n_poison, trim_fraction, radius):
    directions = np.random.default_rng(0).normal(size=(n_poison, X_clean.shape[1]))
    return np.median(X_clean, axis=0) + radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)


def clean_points(X_clean, n_poison, trim_fraction, radius):
    inner = X_clean[np.linalg.norm(X_clean - np.median(X_clean, axis=0), axis=1) <= radius]
    return inner[np.random.default_rng(0).choice(len(inner), n_poison, replace=False)]


@pytest.mark.parametrize("name, attack, failed, lowest", [
    # one point spread evenly over the coordinates: at least half the reference's damage, not 80% where the
    # coordinates' spreads differ (the coordinates with little room are pushed past the point where they are cut)
    ("even spread", one_point(lambda X: np.ones(X.shape[1])), ["test_part_d_strong_hidden"], (50, 80)),
    # Part B's attack, along the first axis: there the poisons lie far beyond the point from which they are cut, and
    # the other coordinates do not move
    ("first axis", one_point(lambda X: np.eye(X.shape[1])[0]), ["test_part_d_hidden", "test_part_d_strong_hidden"],
     (0, 20)),
    # the poisons spread out: their pulls cancel
    ("random directions", random_directions, ["test_part_d_hidden", "test_part_d_strong_hidden"], (0, 30)),
    ("clean points", clean_points, ["test_part_d_hidden", "test_part_d_strong_hidden"], (0, 30)),
    ("at the median", lambda X, m, beta, r: np.tile(np.median(X, axis=0), (m, 1)),
     ["test_part_d_hidden", "test_part_d_strong_hidden"], (0, 10)),
])
def test_weaker_attacks_earn_partial_or_no_points(plan, name, attack, failed, lowest):
    result = verdicts(plan, attack)
    assert sorted(gid for gid, (passed, _) in result.items() if not passed) == sorted(failed), (name, result)
    assert result["test_part_d_visible"][0]  # the form and the radius are right
    for gid in failed:
        threshold = 50 if gid == "test_part_d_hidden" else 80
        assert f"below the threshold {threshold}%" in result[gid][1], (name, result[gid])
    # the weakest case, as the judge measures it
    worst = 100.0
    for group in plan.cells["test_part_d_hidden"]:
        (args, _), judge = group.calls[0], group.judges[0]
        problem, note = judge.verdict(("value", attack(*args)), args, {})
        worst = min(worst, float(re.search(r"(\d+\.\d)% of the reference attack's", problem or note)[1]))
    assert lowest[0] <= worst < lowest[1], (name, worst)


def test_poisons_of_the_wrong_form_or_outside_the_radius_fail_with_a_reason(plan):
    solution = model_solution()

    def changed(change):
        return lambda X, m, beta, r: change(solution(X, m, beta, r), X, r)

    cases = [
        # far outliers would be cut, and yet move the trimmed mean more than any poisons within the radius
        (lambda P, X, r: np.full_like(P, 1e3), "beyond the radius"),
        (lambda P, X, r: np.median(X, axis=0) + (1 + 1e-6) * (P - np.median(X, axis=0)), "beyond the radius"),
        (lambda P, X, r: P[:-1], "return a NumPy array of shape"),
        (lambda P, X, r: P[:, 0], "return a NumPy array of shape"),
        (lambda P, X, r: P.tolist(), "return a NumPy array of shape"),
        (lambda P, X, r: np.where(np.arange(len(P))[:, None] == 0, np.nan, P), "finite numbers"),
        (lambda P, X, r: P.astype(complex), "real numbers"),
        (lambda P, X, r: None, "return a NumPy array of shape"),
    ]
    for change, reason in cases:
        result = verdicts(plan, changed(change))
        for gid in PART_D:
            passed, message = result[gid]
            assert not passed and reason in message, (reason, gid, message)


def test_far_outliers_would_do_more_than_the_reference_which_is_why_the_radius(hidden):
    """With the trim fraction at least the fraction of poisons, poisons far beyond the data are all cut, but they push
    the window of kept values in every coordinate: without the radius they would beat any attack within it."""
    for (X, n_poison, trim_fraction, radius), reference in zip(hidden["CASES_D"], hidden["REFERENCE_DAMAGE_D"]):
        far = np.full((n_poison, X.shape[1]), X.max() + 1e3)
        assert hidden["damage_d"](X, far, trim_fraction) > reference
