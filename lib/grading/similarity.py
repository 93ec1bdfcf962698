"""Code-similarity (plagiarism) report for submitted notebooks, built on copydetect.

The code each student wrote (the nbgrader solution cells of the submitted notebook, see :func:`notebook_code`) is
written to a temporary ``.py`` file named after the student, and `copydetect <https://pypi.org/project/copydetect/>`_
compares every submission with every other one and with the Python files of the given library folders (e.g. the
course's own ``poisoning`` package, whose reference implementations students could paste). The code of the released
notebook (the template) is copydetect's boilerplate: matches made only of it do not count.

copydetect tokenizes the code with Pygments, replaces every variable, function and class name by a placeholder and
strings by ``S``, drops comments and whitespace, and compares winnowed k-gram fingerprints of what remains (MOSS's
algorithm). So it catches copies with renamed variables and functions, changed comments, strings, blank lines and
layout. It does not catch a copy that was restructured (statements reordered, loops turned into comprehensions,
code moved into or out of helper functions, a different library call doing the same thing), overlaps shorter than
``noise_threshold`` characters of tokenized code, code copied from anywhere it was not shown (the web, a chatbot,
last year's solutions), or notebook cells that are not solution cells. A high score is a lead for a person to read
the side-by-side report, not proof: short exercises with one natural solution give similar code honestly.

copydetect picks fingerprints with Python's built-in ``hash``, which is salted per process, so the scores of one
pair may differ by a few percent from one run to the next; set ``PYTHONHASHSEED`` for a reproducible report.
"""

from __future__ import annotations

import html
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import copydetect
import nbformat

__all__ = ["SimilarPair", "notebook_code", "similarity_report"]


@dataclass
class SimilarPair:
    """One pair of similar code: two students, or a student and a library file."""

    first: str  # a student id
    second: str  # another student id (``first < second``), or ``"library:<package>/<relative path>"``
    similarity: float  # in [0, 1]: the larger of copydetect's two overlap fractions (share of each side's code)
    tokens_overlap: int  # copydetect's token overlap (characters of the tokenized, name-normalized code)


def _code(path, solution_only: bool) -> str:
    try:
        notebook = nbformat.read(str(path), as_version=4)
        cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        if solution_only and any("nbgrader" in cell.metadata for cell in notebook.cells):
            cells = [cell for cell in cells if cell.metadata.get("nbgrader", {}).get("solution", False)]
        sources = ["\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
                   for cell in cells]
    except Exception:  # not a file, not JSON, not a notebook: nothing we can compare
        return ""
    return "\n\n".join(source.strip("\n") for source in sources if source.strip())


def notebook_code(path) -> str:
    """The code a student wrote in a submitted notebook.

    That is the source of the code cells whose nbgrader metadata says ``solution=True``
    (``cell.metadata.nbgrader.solution``), joined by blank lines; if the notebook has no nbgrader metadata at all,
    every code cell. IPython magics and shell lines (starting with ``%`` or ``!``) are dropped. A notebook that
    cannot be read gives ``''``.
    """
    return _code(path, solution_only=True)


def similarity_report(submissions: dict[str, Path], output_html: Path, *, template: Path | None = None,
                      library_dirs: list[Path] = (), display_threshold: float = 0.5,
                      noise_threshold: int = 25, guarantee_threshold: int = 30) -> list[SimilarPair]:
    """Compare the submissions with each other and with library code; write copydetect's HTML report.

    ``submissions`` maps each student id to the path of that student's notebook. The code of ``template`` (the
    released notebook, all its code cells) is boilerplate that does not count. Every submission is also compared
    with the ``.py`` files under each of ``library_dirs`` (e.g. the installed ``poisoning`` package folder); those
    are named ``"library:<folder name>/<relative path>"``.

    copydetect's side-by-side HTML report is written to ``output_html`` (parent folders are created), with the
    student ids and library names in place of the temporary file paths. It lists a pair when the share of the
    *submission's* code found in the other file is above ``display_threshold`` (for two students that is either
    side); the returned list has every pair (student-student, once each, and student-library file) with
    similarity > 0, most similar first. ``noise_threshold`` and ``guarantee_threshold`` are copydetect's: overlaps
    shorter than the first (in characters of tokenized code) are ignored, overlaps at least as long as the second
    are always found.
    """
    submissions = {str(student): Path(path) for student, path in submissions.items()}
    library_dirs = [Path(folder) for folder in library_dirs]
    if not submissions or (len(submissions) < 2 and not library_dirs):
        raise ValueError(f"similarity_report needs at least two submissions, or one and library_dirs to compare "
                         f"it with; got {len(submissions)} submission(s) and no library_dirs")
    for student, path in submissions.items():
        if student in ("", ".", "..") or Path(student).name != student:
            raise ValueError(f"student id {student!r} cannot be used as a file name")
        if not path.is_file():
            raise ValueError(f"submission of {student!r} not found: {path}")
    for folder in library_dirs:
        if not folder.is_dir():
            raise ValueError(f"library folder not found: {folder}")
    if template is not None and not Path(template).is_file():
        raise ValueError(f"template notebook not found: {template}")

    output_html = Path(output_html)
    output_html.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="similarity-") as tmp:
        submitted_dir, template_dir = Path(tmp, "submissions"), Path(tmp, "template")
        names = {}  # copydetect's file name (a str path, as copydetect builds it) -> name in the report
        for student, path in submissions.items():
            file = submitted_dir / student / f"{student}.py"
            file.parent.mkdir(parents=True)
            file.write_text(notebook_code(path) + "\n", encoding="utf-8")
            names[str(file)] = student
        for folder in library_dirs:
            for file in Path(str(folder)).rglob("*.py"):
                names[str(file)] = f"library:{folder.name}/{file.relative_to(folder).as_posix()}"
        boilerplate_dirs = []
        if template is not None:
            template_dir.mkdir()
            (template_dir / "template.py").write_text(_code(template, solution_only=False) + "\n", encoding="utf-8")
            boilerplate_dirs.append(str(template_dir))

        detector = copydetect.CopyDetector(
            test_dirs=[str(submitted_dir)], ref_dirs=[str(submitted_dir)] + [str(folder) for folder in library_dirs],
            boilerplate_dirs=boilerplate_dirs, extensions=["py"], display_t=display_threshold,
            noise_t=noise_threshold, guarantee_t=guarantee_threshold, silent=True, autoopen=False,
            out_file=str(output_html))
        detector.test_files.sort()  # copydetect lists files in set order: sort them, for a reproducible report
        detector.ref_files.sort()
        detector.run()

        with warnings.catch_warnings():  # copydetect 0.5 reads its HTML template with a deprecated importlib call
            warnings.simplefilter("ignore", DeprecationWarning)
            report = detector.generate_html_report(output_mode="return")
        # the report names files by their paths: show the student ids and library names instead
        renames = list(names.items()) + [(str(submitted_dir), "submissions"), (str(template_dir), "template")]
        for path, name in sorted(renames, key=lambda item: -len(item[0])):
            report = report.replace(html.escape(path), html.escape(name)).replace(path, html.escape(name))
        output_html.write_text(report, encoding="utf-8")

        # every pair, not only those above the display threshold that get_copied_code_list() gives
        pairs, students = {}, set(detector.test_files)
        for i, test_file in enumerate(detector.test_files):
            for j, ref_file in enumerate(detector.ref_files):
                similarity = float(max(detector.similarity_matrix[i, j]))
                if similarity <= 0:  # no overlap, or not compared (-1: a file with itself)
                    continue
                first, second = names[test_file], names[ref_file]
                if ref_file in students:  # two students: once each, in alphabetical order
                    first, second = sorted((first, second))
                pairs[first, second] = SimilarPair(first, second, similarity,
                                                   int(detector.token_overlap_matrix[i, j]))
    return sorted(pairs.values(), key=lambda pair: (-pair.similarity, pair.first, pair.second))
