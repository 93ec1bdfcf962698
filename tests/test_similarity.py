"""Tests for grading.similarity: the copydetect-based plagiarism report on small, hand-written submissions.

The submissions are written out below: two students share one solution with renamed variables and rewritten
comments, one wrote her own, one pasted a function from a library folder, and two left the released code as it was.
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grading.similarity import SimilarPair, notebook_code, similarity_report

SETUP = '''\
import numpy as np

rng = np.random.default_rng(0)
clean = rng.normal(size=200)
poisoned = np.concatenate([clean, np.full(20, 50.0)])
'''

# the released solution cell: a skeleton with input checks that every student keeps
SKELETON = '''\
def trimmed_mean(values, eps):
    """Mean of the values left after dropping the eps-fraction smallest and largest ones."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError("values must be one-dimensional")
    if not 0 <= eps < 0.5:
        raise ValueError("eps must be in [0, 0.5)")
'''
STUB = SKELETON + '''\
    # YOUR CODE HERE
    raise NotImplementedError()
'''

ALICE = SKELETON + '''\
    # sort the samples and drop the eps-fraction at both ends
    ordered = sorted(values)
    n = len(ordered)
    k = int(eps * n)
    kept = ordered[k:n - k]
    if len(kept) == 0:
        return float("nan")
    total = 0.0
    for v in kept:
        total += v
    return total / len(kept)


def poisoned_error(clean, poisoned, eps):
    clean_estimate = trimmed_mean(clean, eps)
    poisoned_estimate = trimmed_mean(poisoned, eps)
    gap = abs(poisoned_estimate - clean_estimate)
    return {"clean": clean_estimate, "poisoned": poisoned_estimate, "gap": gap}
'''

# Alice's solution with every name changed, other comments and strings
BOB = SKELETON + '''\
    # order the data, then cut off both tails
    xs = sorted(values)
    size = len(xs)
    cut = int(eps * size)
    middle = xs[cut:size - cut]
    if len(middle) == 0:
        return float("inf")
    acc = 0.0
    for item in middle:
        acc += item
    return acc / len(middle)


def poisoned_error(reference, attacked, eps):
    before = trimmed_mean(reference, eps)
    after = trimmed_mean(attacked, eps)
    shift = abs(after - before)
    return {"before": before, "after": after, "shift": shift}
'''

# an honest, differently written solution
CAROL = SKELETON + '''\
    lo, hi = np.quantile(values, [eps, 1 - eps])
    inside = values[(values >= lo) & (values <= hi)]
    return float(inside.mean()) if inside.size else float("nan")


def poisoned_error(clean, poisoned, eps):
    estimates = [trimmed_mean(sample, eps) for sample in (clean, poisoned)]
    return dict(clean=estimates[0], poisoned=estimates[1], gap=abs(estimates[1] - estimates[0]))
'''

LIBRARY_FUNCTION = '''\
def median_of_means(values, n_blocks, seed=0):
    """Median of the means of n_blocks random blocks of the values."""
    values = np.asarray(values, dtype=float)
    if n_blocks < 1 or n_blocks > len(values):
        raise ValueError("n_blocks must be between 1 and the number of values")
    shuffled = np.random.default_rng(seed).permutation(values)
    blocks = np.array_split(shuffled, n_blocks)
    means = np.array([block.mean() for block in blocks])
    return float(np.median(means))
'''

LIBRARY = '''\
"""Robust estimators of the mean."""

import numpy as np


''' + LIBRARY_FUNCTION + '''

def coordinatewise_median(points):
    """Median of each coordinate of the rows of points."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    return np.median(points, axis=0)
'''

# Dave pasted the library's median_of_means (renaming nothing) and calls it
DAVE = LIBRARY_FUNCTION + '''

''' + SKELETON + '''\
    return median_of_means(values, max(1, int(1 / max(eps, 0.01))))
'''


def nbgrader(grade_id, *, solution=False, grade=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def write_notebook(path, solution, *, extra_cells=()):
    """An nbgrader notebook: a locked setup cell, the solution cell, a locked test cell."""
    notebook = new_notebook(cells=[
        new_markdown_cell("# Trimmed mean", metadata=nbgrader("intro", locked=True)),
        new_code_cell(SETUP, metadata=nbgrader("setup", locked=True)),
        new_code_cell(solution, metadata=nbgrader("trimmed_mean", solution=True)),
        *extra_cells,
        new_code_cell("assert abs(trimmed_mean(clean, 0.1)) < 0.5",
                      metadata=nbgrader("test_trimmed_mean", grade=True, locked=True, points=2)),
    ])
    nbformat.write(notebook, str(path))
    return path


@pytest.fixture
def course(tmp_path):
    """Template, submissions and a library folder, as paths."""
    (tmp_path / "release").mkdir()
    template = write_notebook(tmp_path / "release" / "assignment.ipynb", STUB)
    submitted = tmp_path / "submitted"
    submitted.mkdir()
    codes = {"alice": ALICE, "bob": BOB, "carol": CAROL, "dave": DAVE, "erin": STUB, "frank": STUB}
    submissions = {student: write_notebook(submitted / f"{student}.ipynb", code) for student, code in codes.items()}
    library = tmp_path / "site-packages" / "mylib"
    library.mkdir(parents=True)
    (library / "__init__.py").write_text('"""A small library."""\n')
    (library / "robust.py").write_text(LIBRARY)
    return {"template": template, "submissions": submissions, "library": library, "tmp": tmp_path}


@pytest.fixture
def report(course):
    output = course["tmp"] / "reports" / "similarity.html"
    pairs = similarity_report(course["submissions"], output, template=course["template"],
                              library_dirs=[course["library"]])
    return pairs, output


def pair(pairs, first, second):
    """The reported pair of first and second (in either order), or None."""
    found = [p for p in pairs if {p.first, p.second} == {first, second}]
    assert len(found) <= 1, f"pair {first}-{second} reported more than once: {found}"
    return found[0] if found else None


def test_renamed_copy_is_the_top_pair(report):
    pairs, _ = report
    assert pairs, "nothing reported"
    assert (pairs[0].first, pairs[0].second) == ("alice", "bob")
    assert pairs[0].similarity > 0.8
    assert pairs[0].tokens_overlap >= 25


def test_pairs_are_sorted_unique_and_well_formed(report):
    pairs, _ = report
    assert all(isinstance(p, SimilarPair) for p in pairs)
    assert [p.similarity for p in pairs] == sorted((p.similarity for p in pairs), reverse=True)
    assert all(0 < p.similarity <= 1 and p.tokens_overlap > 0 for p in pairs)
    keys = [frozenset((p.first, p.second)) for p in pairs]
    assert len(keys) == len(set(keys))
    students = {"alice", "bob", "carol", "dave", "erin", "frank"}
    for p in pairs:
        assert p.first in students
        if p.second in students:
            assert p.first < p.second
        else:
            assert p.second == "library:mylib/robust.py"


def test_honest_solution_is_clearly_less_similar(report):
    pairs, _ = report
    top = pair(pairs, "alice", "bob").similarity
    for other in ("alice", "bob"):
        found = pair(pairs, "carol", other)
        assert found is None or found.similarity < 0.5 < top


def test_pasted_library_code_is_reported_against_the_library_file(report):
    pairs, _ = report
    found = pair(pairs, "dave", "library:mylib/robust.py")
    assert found is not None and found.first == "dave"
    assert found.similarity > 0.5  # about 0.7, depending on the process's hash salt
    for student in ("alice", "bob", "carol", "erin", "frank"):
        assert pair(pairs, student, "library:mylib/robust.py") is None


def test_template_code_does_not_count(course, report):
    pairs, _ = report
    assert pair(pairs, "erin", "frank") is None
    # without the template the untouched skeletons are identical code
    output = course["tmp"] / "no-template.html"
    submissions = {s: course["submissions"][s] for s in ("erin", "frank")}
    found = pair(similarity_report(submissions, output), "erin", "frank")
    assert found is not None and found.similarity > 0.9


def test_html_report_names_students_not_temporary_files(report):
    pairs, output = report
    text = output.read_text(encoding="utf-8")
    for name in ("alice", "bob", "dave", "library:mylib/robust.py"):
        assert name in text
    assert "similarity-" not in text  # the temporary folder's name
    assert "trimmed_mean" in text  # the matched code is shown


def test_one_submission_against_a_library(course, tmp_path):
    pairs = similarity_report({"dave": course["submissions"]["dave"]}, tmp_path / "dave.html",
                              library_dirs=[course["library"]])
    assert [(p.first, p.second) for p in pairs] == [("dave", "library:mylib/robust.py")]
    assert (tmp_path / "dave.html").is_file()


def test_unreadable_submission_is_compared_as_empty_code(course, tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    submissions = {"alice": course["submissions"]["alice"], "bob": course["submissions"]["bob"], "zoe": broken}
    pairs = similarity_report(submissions, tmp_path / "report.html")
    assert [(p.first, p.second) for p in pairs] == [("alice", "bob")]


def test_errors(course, tmp_path):
    output = tmp_path / "report.html"
    alice = course["submissions"]["alice"]
    with pytest.raises(ValueError, match="at least two submissions"):
        similarity_report({"alice": alice}, output)
    with pytest.raises(ValueError, match="at least two submissions"):
        similarity_report({}, output, library_dirs=[course["library"]])
    with pytest.raises(ValueError, match="not found"):
        similarity_report({"alice": alice, "zoe": tmp_path / "missing.ipynb"}, output)
    with pytest.raises(ValueError, match="not found"):
        similarity_report({"alice": alice}, output, library_dirs=[tmp_path / "no-such-library"])
    assert not output.exists()


def test_notebook_code_keeps_solution_cells_and_drops_magics(tmp_path):
    extra = [
        new_code_cell("%matplotlib inline\n!pip install numpy\nimport math\n  %time x = 1\nprint(math.pi)",
                      metadata=nbgrader("plot", solution=True)),
        new_markdown_cell("My answer: the mean breaks.", metadata=nbgrader("explain", solution=True, grade=True,
                                                                            points=1)),
        new_code_cell("", metadata=nbgrader("empty", solution=True)),
    ]
    path = write_notebook(tmp_path / "nb.ipynb", ALICE, extra_cells=extra)
    assert notebook_code(path) == ALICE.strip("\n") + "\n\nimport math\nprint(math.pi)"


def test_notebook_code_without_nbgrader_metadata_takes_every_code_cell(tmp_path):
    notebook = new_notebook(cells=[new_code_cell("x = 1"), new_markdown_cell("text"),
                                   new_code_cell("%load_ext autoreload\ny = x + 1")])
    nbformat.write(notebook, str(tmp_path / "plain.ipynb"))
    assert notebook_code(tmp_path / "plain.ipynb") == "x = 1\n\ny = x + 1"


def test_notebook_code_of_an_unreadable_notebook_is_empty(tmp_path):
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert notebook_code(tmp_path / "broken.ipynb") == ""
    assert notebook_code(tmp_path / "missing.ipynb") == ""
