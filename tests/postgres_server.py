"""A throwaway PostgreSQL server for the gradebook tests (``test_gradebook_postgres.py``).

It is the system's own PostgreSQL (Debian's ``postgresql`` package, which ``make test`` installs when it runs as
root with apt-get), started by the tests in a fresh temporary folder: a new cluster (``initdb``), listening on
127.0.0.1 only, on a free port, with its unix socket in that folder and ``trust`` authentication (nothing else can
reach it). ``initdb`` and ``postgres`` refuse to run as root, so as root they run as the ``postgres`` system user
that the Debian package creates. The server is stopped and the folder deleted when the tests are done, also when
they fail.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SUPERUSER = "postgres"
#: the system user that runs the server when the tests run as root (created by Debian's postgresql package)
SYSTEM_USER = "postgres"
BINARIES = ("initdb", "postgres")


def in_ci():
    """True when the environment variable CI is set to anything but empty, 0, false or no (as in the browser
    tests, ``tests/browser/browser_support.py``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _version(folder):
    numbers = re.findall(r"\d+", os.path.basename(os.path.dirname(folder)))
    return tuple(int(n) for n in numbers)


def find_binaries():
    """The folder that holds ``initdb`` and ``postgres``, newest version first: Debian keeps them in
    ``/usr/lib/postgresql/<version>/bin`` (not on ``PATH``); elsewhere ``pg_config --bindir`` or ``PATH``. ``None``
    when there is no PostgreSQL server on this machine."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                             timeout=30).stdout.strip())
    if shutil.which("initdb"):
        candidates.append(os.path.dirname(shutil.which("initdb")))
    for folder in candidates:
        if folder and all(os.access(os.path.join(folder, name), os.X_OK) for name in BINARIES):
            return folder
    return None


def unavailable_reason():
    """Why no test server can be started here (one line), or ``None`` when it can."""
    if find_binaries() is None:
        return ("PostgreSQL is not installed (no initdb/postgres in /usr/lib/postgresql/*/bin or on PATH; "
                "`make system-packages` installs Debian's postgresql as root)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return f"running as root, and there is no '{SYSTEM_USER}' system user to run PostgreSQL as"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver psycopg2 is not installed (pip install -e '.[course]')"
    return None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One PostgreSQL server in a temporary folder of its own; :meth:`start`, :meth:`url`, :meth:`stop`."""

    def __init__(self):
        self.bindir = find_binaries()
        self.folder = None
        self.process = None
        self.port = None
        self._user = {}
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            entry = pwd.getpwnam(SYSTEM_USER)
            self._user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    @property
    def data(self):
        return os.path.join(self.folder, "data")

    @property
    def log_path(self):
        return os.path.join(self.folder, "server.log")

    def _run(self, *args, **kwargs):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        return subprocess.run(args, cwd=self.folder, env=env, capture_output=True, text=True, **self._user, **kwargs)

    def start(self, timeout=60):
        # not pytest's tmp_path: its folders are root's alone, and the server may run as another user
        self.folder = tempfile.mkdtemp(prefix="course-postgres-")
        if self._user:
            os.chown(self.folder, self._user["user"], self._user["group"])
        result = self._run(os.path.join(self.bindir, "initdb"), "--pgdata", self.data, "--username", SUPERUSER,
                           "--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync", timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {(result.stderr or result.stdout).strip()[-2000:]}")
        for attempt in range(3):  # the free port may be taken between the probe and the server's start
            self.port = free_port()
            log = open(self.log_path, "w")
            if self._user:
                os.chown(self.log_path, self._user["user"], self._user["group"])
            # a test server: loopback only, its socket in its own folder, no durability (faster)
            self.process = subprocess.Popen(
                [os.path.join(self.bindir, "postgres"), "-D", self.data, "-h", "127.0.0.1", "-p", str(self.port),
                 "-k", self.folder, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=50", "-c", "shared_buffers=16MB"],
                cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, env={"LC_ALL": "C", "TZ": "UTC"},
                start_new_session=True, **self._user)
            log.close()
            if self._wait_ready(timeout):
                return self
            self._terminate()
            if "could not bind" not in self.log():
                break
        raise RuntimeError(f"the PostgreSQL test server did not start:\n{self.log()[-3000:]}")

    def _wait_ready(self, timeout):
        import psycopg2

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                psycopg2.connect(self.dsn("postgres"), connect_timeout=5).close()
                return True
            except psycopg2.OperationalError:
                time.sleep(0.1)
        return False

    def log(self):
        with contextlib.suppress(OSError):
            with open(self.log_path, errors="replace") as handle:
                return handle.read()
        return ""

    def dsn(self, database):
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database, password=None):
        """The SQLAlchemy URL of ``database`` (any password is accepted: ``trust``)."""
        secret = f":{password}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name):
        """A new, empty database ``name``; returns its URL."""
        import psycopg2

        connection = psycopg2.connect(self.dsn("postgres"))
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)

    def _terminate(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown: ends every session
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None

    def stop(self):
        """Stop the server and delete its folder."""
        try:
            self._terminate()
        finally:
            if self.folder:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder = None


@contextlib.contextmanager
def running_server():
    """A started :class:`PostgresServer`, stopped and deleted when the block ends."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
