"""Reading a batch of submissions (a folder or a .zip) and collecting it with nbgrader's zip_collect.

Each submitted notebook must be named ``<student_id>_<notebook>.ipynb`` (e.g. ``jdoe42_assignment1.ipynb``), as
``FileNameCollectorPlugin.named_regexp`` in ``nbgrader_config.py`` says; the student id has letters, digits,
dots and hyphens, no underscore. Files may sit in sub-folders. Before anything is collected every file is
checked; a file that is not a notebook, is not valid notebook JSON, has a name that yields no student id or
names a notebook the assignment does not have, or is one of two submissions of the same notebook by the same
student, is skipped and reported as a :class:`Problem`.
"""

from __future__ import annotations

import os
import shutil
import warnings
import zipfile
from dataclasses import dataclass

from .coursedir import CourseError, quiet_logger, run_nbgrader

NAMING = "<student_id>_<notebook>.ipynb"
MAX_NOTEBOOK_MB = 50  # larger files are not read
MAX_ZIP_MB = 2048  # total size of the files in a .zip of submissions
MAX_ZIP_FILES = 10000


@dataclass
class Submission:
    student: str
    notebook: str  # without .ipynb
    path: str  # the validated file
    name: str  # how to call it in messages (path inside SUBMISSIONS)


@dataclass
class Problem:
    name: str
    message: str
    student: str | None = None

    def __str__(self):
        return f"skipped {self.name}: {self.message}"


def _extract_zip(archive, destination):
    """Extract ``archive`` into ``destination``, refusing absolute paths, ``..``, links and zip bombs."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_FILES:
                raise CourseError(f"{archive} holds more than {MAX_ZIP_FILES} files")
            if sum(m.file_size for m in members) > MAX_ZIP_MB * 1024 * 1024:
                raise CourseError(f"{archive} unpacks to more than {MAX_ZIP_MB} MB")
            for member in members:
                name = member.filename.replace("\\", "/")
                parts = [p for p in name.split("/") if p not in ("", ".")]
                if name.startswith("/") or ".." in parts or not parts:
                    raise CourseError(f"{archive} contains an unsafe path: {member.filename}")
                if (member.external_attr >> 16) & 0o170000 == 0o120000:  # a symbolic link
                    continue
                target = os.path.join(destination, *parts)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with zf.open(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError) as error:
        raise CourseError(f"cannot unpack {archive}: {error}") from None


def _candidate_files(folder):
    """Every regular file under ``folder`` (sorted), skipping hidden files and ``__MACOSX`` folders."""
    found = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            found.append(path)
    return found


def _notebook_problem(path):
    """``None`` for a valid notebook file, else why it is not one."""
    import nbformat

    size_mb = os.path.getsize(path) / (1024 * 1024)
    if size_mb > MAX_NOTEBOOK_MB:
        return f"too large ({size_mb:.0f} MB, the limit is {MAX_NOTEBOOK_MB} MB)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"not a valid notebook ({reason[:120]})"
    return None


def _valid_student_id(student):
    return bool(student) and not student.startswith(".") and "/" not in student and os.sep not in student


def gather(course, assignment, source, notebooks, staging):
    """Read the submissions in ``source`` (a folder or a .zip); return ``(submissions, problems)``.

    ``notebooks`` are the names of the assignment's released notebooks; ``staging`` is an empty scratch
    folder (a .zip is unpacked there).
    """
    from nbgrader.plugins import FileNameCollectorPlugin

    source = os.path.abspath(source)
    if not os.path.exists(source):
        raise CourseError(f"SUBMISSIONS not found: {source}")
    if os.path.isdir(source):
        folder = source
    elif zipfile.is_zipfile(source):
        folder = os.path.join(staging, "unpacked")
        os.makedirs(folder)
        _extract_zip(source, folder)
    else:
        raise CourseError(f"SUBMISSIONS must be a folder or a .zip file of notebooks: {source}")

    collector = FileNameCollectorPlugin(config=course.config)
    collector.log = quiet_logger(level=100)  # it warns about every name that does not match
    example = f"e.g. jdoe42_{notebooks[0]}.ipynb"
    problems, by_key = [], {}
    for path in _candidate_files(folder):
        name = os.path.relpath(path, folder)
        if not path.endswith(".ipynb"):
            problems.append(Problem(name, "not a notebook (.ipynb)"))
            continue
        info = collector.collect(path)
        student = (info or {}).get("student_id")
        if not info or not isinstance(student, str) or not _valid_student_id(student):
            problems.append(Problem(name, f"no student id in the file name (expected {NAMING}, {example})"))
            continue
        notebook = os.path.splitext(os.path.basename(str(info.get("file_id", ""))))[0]
        if notebook not in notebooks:
            expected = ", ".join(f"{student}_{nb}.ipynb" for nb in notebooks)
            problems.append(Problem(name, f"'{notebook}' is not a notebook of {assignment} (expected {expected})",
                                    student))
            continue
        problem = _notebook_problem(path)
        if problem:
            problems.append(Problem(name, problem, student))
            continue
        by_key.setdefault((student, notebook), []).append(Submission(student, notebook, path, name))

    submissions, duplicated = [], set()
    for (student, notebook), found in sorted(by_key.items()):
        if len(found) > 1:
            duplicated.add(student)
            others = ", ".join(s.name for s in found)
            for s in found:
                problems.append(Problem(s.name, f"student '{student}' submitted {notebook} more than once ({others})",
                                        student))
    for (student, notebook), found in sorted(by_key.items()):
        if student not in duplicated:
            submissions.append(found[0])
    return submissions, problems


def collect(course, assignment, submissions):
    """Copy ``submissions`` into ``submitted/<student>/<assignment>/`` with nbgrader's zip_collect."""
    from nbgrader.apps.zipcollectapp import ZipCollectApp
    from traitlets.config import Config

    config = Config(course.config)
    config.ZipCollectApp.force = True
    config.ExtractorPlugin.force = True
    app = ZipCollectApp(config=config)
    app.coursedir = course.coursedir(assignment_id=assignment)
    archive = app._format_collect_path(app.archive_directory)
    shutil.rmtree(archive, ignore_errors=True)
    os.makedirs(archive)
    for submission in submissions:  # keep the folders: the collector may read the student id from them
        target = os.path.join(archive, submission.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(submission.path, target)
    app.log = quiet_logger()
    success, log, error = run_nbgrader(app)
    if not success:
        raise CourseError(f"nbgrader zip_collect failed: {(error or log).strip().splitlines()[-1:]}")
    missing = [s for s in submissions
               if not os.path.isfile(os.path.join(course.path("submitted", s.student, assignment),
                                                  s.notebook + ".ipynb"))]
    if missing:
        raise CourseError(f"nbgrader zip_collect did not collect {missing[0].name}; "
                          "check FileNameCollectorPlugin.named_regexp in nbgrader_config.py")
