"""Fixtures shared by the whole test suite.

The book is built once per test session, by the same command as ``make book``, into a temporary folder (so the
working tree's ``_build`` is neither needed nor touched). ``test_book.py`` checks the build itself; the browser
tests in ``tests/browser/`` serve the result on localhost and look at it in Chromium.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"

# The test build points the launch buttons at this JupyterHub (see _ext/site_settings.py), so that the tests can
# check them. Nothing is ever fetched from it.
TEST_JUPYTERHUB_URL = "https://hub.example.edu"


@pytest.fixture(scope="session")
def book_jupyterhub_url():
    """The JupyterHub that the launch buttons of ``built_book`` point to."""
    return TEST_JUPYTERHUB_URL


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """``(html_dir, log)`` of ``jupyter-book build . -W -n --keep-going``; fails when the build fails."""
    out = tmp_path_factory.mktemp("book")
    env = dict(os.environ, BOOK_JUPYTERHUB_URL=TEST_JUPYTERHUB_URL)
    result = subprocess.run([str(JUPYTER_BOOK), "build", str(ROOT), "--path-output", str(out), "-W", "-n",
                             "--keep-going"], capture_output=True, text=True, timeout=1800, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"book build failed:\n{log[-6000:]}"
    return out / "_build" / "html", log


@pytest.fixture(scope="module")
def loopback_server():
    """``(port, received)``: a TCP server on the host's loopback that collects whatever anyone sends it (the
    grading tests check that code in a seal cannot reach it)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    received, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            with connection:
                received.append(connection.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()

