"""The course folder: its nbgrader configuration, assignments and gradebook."""

from __future__ import annotations

import glob
import logging
import os
import sys
from dataclasses import dataclass

CONFIG_FILE = "nbgrader_config.py"


class CourseError(Exception):
    """A problem with the course or the instructor's input: reported as one line, no traceback."""


def quiet_warnings():
    """Silence the SQLAlchemy warnings that nbgrader's gradebook code triggers (harmless, and noisy)."""
    import warnings

    try:
        from sqlalchemy.exc import SAWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=SAWarning)


def _tools_on_path():
    """Put this Python's scripts folder on ``PATH``: nbgrader runs ``alembic`` from there when it creates a
    gradebook, and a console script started by its full path does not have it on ``PATH``."""
    scripts = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if scripts not in path.split(os.pathsep):
        os.environ["PATH"] = scripts + (os.pathsep + path if path else "")


def load_config(path):
    """The traitlets ``Config`` of one ``nbgrader_config.py`` (and nothing from the user's Jupyter folders)."""
    from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

    directory, name = os.path.split(os.path.abspath(path))
    try:
        return PyFileConfigLoader(name, path=directory).load_config()
    except ConfigFileNotFound:
        raise CourseError(f"no {name} in {directory}") from None
    except Exception as error:  # a syntax error in the config file
        raise CourseError(f"cannot read {path}: {type(error).__name__}: {error}") from None


@dataclass
class Course:
    """A course folder with an ``nbgrader_config.py``."""

    root: str
    config: object  # traitlets Config

    @classmethod
    def open(cls, root=None):
        _tools_on_path()
        quiet_warnings()
        root = os.path.abspath(root or os.getcwd())
        if not os.path.isdir(root):
            raise CourseError(f"course folder not found: {root}")
        config_path = os.path.join(root, CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise CourseError(f"{root} is not a course folder (it has no {CONFIG_FILE}); "
                              "run from the course folder or pass --course-dir")
        config = load_config(config_path)
        # whatever the file says, the course is the folder it was opened from
        config.CourseDirectory.root = root
        course = cls(root, config)
        if not course.db_url.startswith("sqlite:///"):
            raise CourseError(f"the course CLI needs an SQLite gradebook, got CourseDirectory.db_url = {course.db_url}")
        return course

    @property
    def config_path(self):
        return os.path.join(self.root, CONFIG_FILE)

    def coursedir(self, **attributes):
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        for name, value in attributes.items():
            setattr(coursedir, name, value)
        return coursedir

    @property
    def course_id(self):
        return self.coursedir().course_id or "default_course"

    @property
    def db_url(self):
        return self.coursedir().db_url

    @property
    def db_path(self):
        return self.db_url[len("sqlite:///"):]

    def path(self, step, student_id=".", assignment_id="."):
        """The folder of one nbgrader step, e.g. ``path("release", ".", "assignment1")``."""
        coursedir = self.coursedir()
        directory = getattr(coursedir, f"{step}_directory")
        return os.path.normpath(coursedir.format_path(directory, student_id, assignment_id))

    def source_assignments(self):
        pattern = os.path.join(self.path("source", ".", "*"))
        return sorted(os.path.basename(p) for p in glob.glob(pattern) if os.path.isdir(p))

    def check_assignment(self, assignment):
        """Fail unless ``assignment`` has a source folder with at least one notebook."""
        known = self.source_assignments()
        if assignment not in known:
            listing = ", ".join(known) if known else "none"
            raise CourseError(f"unknown assignment '{assignment}' (assignments: {listing})")
        if not glob.glob(os.path.join(self.path("source", ".", assignment), "*.ipynb")):
            raise CourseError(f"assignment '{assignment}' has no notebook in {self.path('source', '.', assignment)}")

    def source_notebooks(self, assignment):
        """Names (without ``.ipynb``) of the assignment's source notebooks."""
        folder = self.path("source", ".", assignment)
        return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(folder, "*.ipynb")))

    def released_notebooks(self, assignment):
        """Names (without ``.ipynb``) of the released notebooks; fails when the assignment is not released."""
        self.check_assignment(assignment)
        release = self.path("release", ".", assignment)
        names = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(release, "*.ipynb")))
        if not names or not self.in_gradebook(assignment):
            raise CourseError(f"assignment '{assignment}' is not released yet: run `course release {assignment}` first")
        return names

    def in_gradebook(self, assignment):
        if not os.path.isfile(self.db_path):
            return False
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(self.db_url, self.course_id) as gradebook:
            try:
                gradebook.find_assignment(assignment)
            except MissingEntry:
                return False
        return True


def quiet_logger(name="grading.nbgrader", level=logging.WARNING):
    """A logger for nbgrader's apps that only passes warnings (nbgrader logs a lot at INFO)."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    return logger


def run_nbgrader(app):
    """Run an nbgrader converter or app (``app.start()``); return ``(success, log, error)``."""
    from nbgrader.utils import capture_log

    try:
        outcome = capture_log(app)
    except SystemExit:  # nbgrader's apps call sys.exit(1) through self.fail()
        return False, "", "nbgrader stopped"
    return bool(outcome.get("success")), outcome.get("log", ""), outcome.get("error", "")
