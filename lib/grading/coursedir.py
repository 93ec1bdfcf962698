"""The course folder: its nbgrader configuration, assignments and gradebook.

The gradebook is nbgrader's database, named by ``CourseDirectory.db_url`` in ``nbgrader_config.py`` or, when set,
by the environment variable ``COURSE_DB_URL`` (so that a password need not be in a committed file): an SQLite file
(``sqlite:///PATH``, nbgrader's default ``gradebook.db`` in the course folder) or a PostgreSQL database
(``postgresql://USER:PASSWORD@HOST:PORT/DATABASE``, or ``postgresql+psycopg2://...``), which several instructors can
share. Everything the grader reads or writes there goes through :mod:`grading.gradebook`.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass

CONFIG_FILE = "nbgrader_config.py"
#: the environment variable that, when set, names the gradebook instead of ``CourseDirectory.db_url``
DB_URL_VARIABLE = "COURSE_DB_URL"
SQLITE, POSTGRESQL = "sqlite", "postgresql"
# the PostgreSQL driver the course installs (psycopg2-binary); SQLAlchemy 2.1 would take psycopg 3 for a bare
# postgresql:// URL, so the course names the driver for nbgrader's steps too
POSTGRESQL_DRIVER = "postgresql+psycopg2"


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


def gradebook_url(url, origin="CourseDirectory.db_url"):
    """``(kind, url)`` of a gradebook URL: ``kind`` is :data:`SQLITE` or :data:`POSTGRESQL`, and a PostgreSQL
    ``url`` names the course's driver. Any other URL is refused (``CourseError``, without its password);
    ``origin`` says where the URL came from."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    expected = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        scheme = url.split("://", 1)[0] + "://..." if "://" in url else "not a URL"
        raise CourseError(f"{origin} = {scheme} is not a gradebook URL the course CLI can use ({expected})") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.drivername == SQLITE and url.startswith("sqlite:///") and parsed.database:
        return SQLITE, url
    if parsed.drivername in (POSTGRESQL, POSTGRESQL_DRIVER):
        if not parsed.database:
            raise CourseError(f"{origin} = {shown} names no database ({expected})")
        return POSTGRESQL, POSTGRESQL_DRIVER + url[url.index("://"):]
    raise CourseError(f"{origin} = {shown} is not a gradebook the course CLI can use: it needs an SQLite file or a "
                      f"PostgreSQL database ({expected})")


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
        origin = "CourseDirectory.db_url"
        override = os.environ.get(DB_URL_VARIABLE, "").strip()
        if override:  # e.g. a password kept out of nbgrader_config.py
            config.CourseDirectory.db_url = override
            origin = DB_URL_VARIABLE
        course = cls(root, config)
        kind, url = gradebook_url(course.db_url, origin)
        if url != course.db_url:  # nbgrader's own steps use the same driver as the course's code
            config.CourseDirectory.db_url = url
        if kind == POSTGRESQL and importlib.util.find_spec("psycopg2") is None:
            raise CourseError("a PostgreSQL gradebook needs the driver psycopg2: pip install psycopg2-binary "
                              "(part of the project's course extra)")
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
    def db_kind(self):
        """:data:`SQLITE` or :data:`POSTGRESQL`."""
        return gradebook_url(self.db_url)[0]

    @property
    def db_path(self):
        """The SQLite gradebook's file (``None`` for a PostgreSQL gradebook, which is no file of the course)."""
        if self.db_kind != SQLITE:
            return None
        return self.db_url[len("sqlite:///"):]

    @property
    def db_label(self):
        """The gradebook in words, for messages (never with a password)."""
        if self.db_kind == SQLITE:
            return f"SQLite gradebook {self.db_path}"
        from sqlalchemy.engine import make_url

        url = make_url(self.db_url)
        host = url.host or url.query.get("host") or "the local socket"
        where = f"{host}:{url.port or 5432}" if url.host else host
        user = f" as {url.username}" if url.username else ""
        return f"PostgreSQL gradebook '{url.database}' on {where}{user}"

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
        """Whether the gradebook has the assignment (it was released)."""
        from . import gradebook

        return gradebook.has_assignment(self, assignment)


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
