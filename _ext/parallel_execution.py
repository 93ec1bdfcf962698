"""Execute the chapters that need executing several at a time, before Sphinx reads them.

myst-nb executes a chapter while Sphinx reads it, one page after another, so a build that runs every chapter uses
one CPU core. This extension runs at ``env-before-read-docs``, when Sphinx knows which pages it is about to read:
it picks those that myst-nb would execute (the chapters whose entry in the jupyter-cache is missing or stale),
executes them at the same time, each with its own kernel, and stores each executed notebook in the jupyter-cache
exactly as myst-nb does. myst-nb then reads every chapter as cached and executes none again: a page is the same
as in a rebuild that takes its chapters from the cache, and ``jupyter_execute/<page>.ipynb`` (the executed notebook
offered for download) is written as when myst-nb executes the chapter itself. What myst-nb would do is decided by
myst-nb's own code, never guessed:

* the notebook is read with myst-nb's reader from the page's text (so its cache key is the one myst-nb computes),
  with the same kernel alias and notebook-level ``mystnb`` settings as myst-nb's parser;
* ``create_client`` says whether the page is executed through the cache (``execute_notebooks: cache``, not
  excluded by ``execution_excludepatterns``); the cache lookup is jupyter-cache's ``match_cache_notebook``;
* each chapter runs through jupyter-cache's ``single_nb_execution``, as myst-nb calls it: the same kernel, the
  chapter's folder as working directory, the same per-cell timeout and ``allow_errors``.

When a chapter fails, the build stops at once with myst-nb's warning and an ``ExecutionError`` caused by the
chapter's error (the cell and its traceback), as when myst-nb runs it; the kernels of chapters still running are
killed (as on Ctrl-C), chapters already finished stay cached. With ``nb_execution_raise_on_error`` off, a failed
chapter is left uncached and myst-nb runs it again as usual, recording its traceback.

How many at once: one per CPU core this process may use, at most the number of chapters to execute; the
environment variable ``BOOK_EXECUTION_JOBS`` sets another number, and ``BOOK_EXECUTION_JOBS=1`` leaves all
execution to myst-nb (the serial build). With a single chapter to execute myst-nb runs it too. Chapters run longest
first where the cache knows an earlier time for them, else in the order Sphinx reads them.

A page's text is read from its file; ``source-read`` handlers that change a page's code would change its cache key,
and myst-nb would then execute that page again itself (the result is right, only slower).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from sphinx.errors import ConfigError
from sphinx.util import get_filetype, logging

LOGGER = logging.getLogger(__name__)

JOBS_ENV = "BOOK_EXECUTION_JOBS"
TYPE = "parallel_execution"


@dataclass
class _Chapter:
    docname: str
    path: Path
    notebook: object  # nbformat.NotebookNode, executed in place
    nb_config: object  # myst_nb.core.config.NbParserConfig, with the notebook's own overrides
    read_fmt: dict | None
    uri: str | None = None  # the cache's project record
    previous_seconds: float | None = None
    kernel: object = None  # its kernel manager, once nbclient has made it
    stopped: bool = False


class _Silent:
    """A logger for ``create_client``, which is only asked what it would do here."""

    def _ignore(self, *args, **kwargs):
        pass

    debug = info = warning = error = critical = _ignore


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (taskset, cgroup cpusets)
    except AttributeError:
        return os.cpu_count() or 1


def _jobs_wanted():
    value = os.environ.get(JOBS_ENV, "").strip()
    if not value:
        return _cpu_count()
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ConfigError(f"{JOBS_ENV}={value!r}: expected a whole number of chapters to execute at once, 1 or more")
    return jobs


def _notebook_to_execute(app, env, docname):
    """A ``_Chapter`` when myst-nb, reading ``docname``, would execute it and cache the result, else None."""
    from jupyter_cache import get_cache
    from myst_nb.core.execute import NotebookClientCache, create_client
    from myst_nb.core.read import create_nb_reader
    from myst_nb.core.nb_to_tokens import nb_node_to_dict

    path = env.doc2path(docname)
    if not os.path.isfile(path) or get_filetype(app.config.source_suffix, path) != "myst-nb":
        return None
    # as myst_nb.sphinx_.Parser.parse prepares the notebook for create_client; anything unusual: myst-nb decides
    try:
        with open(path, encoding=app.config.source_encoding) as source:
            text = source.read()
        nb_config = env.mystnb_config
        reader = create_nb_reader(str(path), env.myst_config, nb_config, text)
        if reader is None:
            return None
        notebook = reader.read(text)
        kernel_name = notebook.metadata.get("kernelspec", {}).get("name", None)
        if kernel_name is not None and nb_config.kernel_rgx_aliases:
            for rgx, alias in nb_config.kernel_rgx_aliases.items():
                if re.fullmatch(rgx, kernel_name):
                    notebook.metadata["kernelspec"]["name"] = alias
                    break
        if nb_config.metadata_key in notebook.metadata:
            overrides = nb_node_to_dict(notebook.metadata[nb_config.metadata_key])
            overrides.pop("output_folder", None)
            nb_config = nb_config.copy(**overrides)
        client = create_client(notebook, str(path), nb_config, _Silent(), reader.read_fmt)
        if type(client) is not NotebookClientCache or client.path is None:
            return None
        cache = get_cache(nb_config.execution_cache_path or ".jupyter_cache")
        try:
            cache.match_cache_notebook(notebook)
            return None  # cached: myst-nb takes it from the cache
        except KeyError:
            pass
    except Exception as error:  # myst-nb reports it when it reads the page
        LOGGER.debug("[%s] %s left to myst-nb: %r", TYPE, docname, error)
        return None
    return _Chapter(docname, client.path, notebook, nb_config, reader.read_fmt)


def _previous_times(cache):
    """The latest execution time the cache holds for each notebook path (from earlier versions of a chapter)."""
    times = {}
    try:
        for record in sorted(cache.list_cache_records(), key=lambda record: record.created):
            seconds = (record.data or {}).get("execution_seconds")
            if seconds is not None:
                times[record.uri] = seconds
    except Exception:  # only an ordering hint
        pass
    return times


def _execute(chapter):
    """Run in a worker thread: execute the notebook in place as myst-nb's ``NotebookClientCache`` does."""
    from jupyter_cache.executors.utils import single_nb_execution
    from jupyter_client import AsyncKernelManager

    class KernelManager(AsyncKernelManager):
        """nbclient's default kernel manager, remembered so that a build that stops can stop the kernel."""

        def __init__(self, *args, **kwargs):
            if chapter.stopped:
                raise RuntimeError("the build stopped")
            super().__init__(*args, **kwargs)
            chapter.kernel = self

    nb_config = chapter.nb_config
    cwd_context = TemporaryDirectory() if nb_config.execution_in_temp else nullcontext(str(chapter.path.parent))
    with cwd_context as cwd:
        return single_nb_execution(
            chapter.notebook,
            cwd=os.path.abspath(cwd),
            allow_errors=nb_config.execution_allow_errors,
            timeout=nb_config.execution_timeout,
            meta_override=True,
            kernel_manager_class=KernelManager,
        )


def _stop(chapters, threads, wait=30.0):
    """Kill the kernels of the chapters still running (the build stops), and wait a little for their threads."""
    for chapter in chapters:
        chapter.stopped = True
    deadline = time.monotonic() + wait
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        for chapter in chapters:
            provisioner = getattr(chapter.kernel, "provisioner", None)
            process = getattr(provisioner, "process", None)
            if process is None or process.poll() is not None:
                continue
            try:
                if getattr(provisioner, "pgid", None) and hasattr(os, "killpg"):
                    os.killpg(provisioner.pgid, signal.SIGKILL)  # the kernel and what it started
                else:
                    process.kill()
            except OSError:
                pass
        for thread in threads:
            thread.join(0.2)


def _execute_chapters(app, env, docnames):
    app._parallel_execution_cached = {}  # docname -> cache path, of the chapters executed and cached here
    jobs = _jobs_wanted()
    if jobs < 2:
        return
    chapters = [chapter for chapter in (_notebook_to_execute(app, env, name) for name in docnames) if chapter]
    if len(chapters) < 2:
        return  # nothing to overlap: myst-nb executes it as usual

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from jupyter_cache.cache.db import NbProjectRecord
    from myst_nb.core.execute import ExecutionError

    caches = {}

    def cache_of(chapter):
        path = chapter.nb_config.execution_cache_path or ".jupyter_cache"
        if path not in caches:
            caches[path] = get_cache(path)
        return caches[path]

    previous = {}
    for chapter in chapters:
        cache = cache_of(chapter)
        if id(cache) not in previous:
            previous[id(cache)] = _previous_times(cache)
        chapter.previous_seconds = previous[id(cache)].get(str(chapter.path))
    # longest first where an earlier time is known; chapters never run before first, in reading order
    order = {chapter.docname: i for i, chapter in enumerate(chapters)}
    chapters.sort(key=lambda c: (c.previous_seconds is not None, -(c.previous_seconds or 0), order[c.docname]))

    jobs = min(jobs, len(chapters))
    source = f"{JOBS_ENV}={os.environ[JOBS_ENV].strip()}" if os.environ.get(JOBS_ENV, "").strip() else \
        f"one per CPU core; {JOBS_ENV} sets another number"
    LOGGER.info("[%s] executing %d notebooks, %d at a time (%s)", TYPE, len(chapters), jobs, source)
    started_all = time.perf_counter()
    finished = queue.Queue()
    waiting, running, threads, done = list(chapters), [], [], 0

    def work(chapter):
        try:
            finished.put((chapter, _execute(chapter), None))
        except BaseException as error:  # noqa: BLE001 (raised again in the main thread)
            finished.put((chapter, None, error))

    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                chapter = waiting.pop(0)
                cache = cache_of(chapter)
                # as myst-nb does before it executes a notebook: register it in the cache's project
                if chapter.read_fmt is not None:
                    record = cache.add_nb_to_project(str(chapter.path), read_data=chapter.read_fmt)
                else:
                    record = cache.add_nb_to_project(str(chapter.path))
                NbProjectRecord.remove_tracebacks([record.pk], cache.db)
                chapter.uri = record.uri
                LOGGER.info("Executing notebook using %s CWD (%d of %d, %d at a time) [%s]",
                            "temporary" if chapter.nb_config.execution_in_temp else "local",
                            len(chapters) - len(waiting), len(chapters), jobs, TYPE, location=chapter.docname)
                # a daemon: a thread that _stop could not end does not keep the process alive
                thread = threading.Thread(target=work, args=(chapter,), name=f"execute {chapter.docname}",
                                          daemon=True)
                thread.start()
                running.append(chapter)
                threads.append(thread)
            try:
                chapter, result, error = finished.get(timeout=1.0)  # a timeout, so that Ctrl-C gets through
            except queue.Empty:
                continue
            running.remove(chapter)
            if error is not None:
                raise error  # not an error in the chapter's code (the kernel died or did not start, ...)
            if result.err is not None:
                if not chapter.nb_config.execution_raise_on_error:
                    # left uncached: myst-nb executes it again, and records and shows the error as it always does
                    LOGGER.info("Executing notebook failed: %s; myst-nb executes it again [%s]",
                                result.err.__class__.__name__, TYPE, location=chapter.docname)
                    continue
                # what myst-nb does when a notebook fails (myst_nb/core/execute/cache.py)
                message = f"Executing notebook failed: {result.err.__class__.__name__}"
                if chapter.nb_config.execution_show_tb:
                    message += f"\n{result.exc_string}"
                LOGGER.warning(f"{message} [mystnb.exec]", location=chapter.docname, type="mystnb", subtype="exec")
                raise ExecutionError(str(chapter.path)) from result.err
            done += 1
            LOGGER.info("Executed notebook in %.2f seconds (%d of %d done) [%s]", result.time, done,
                        len(chapters), TYPE, location=chapter.docname)
            # exactly what myst-nb stores (myst_nb/core/execute/cache.py)
            cache_of(chapter).cache_notebook_bundle(
                CacheBundleIn(chapter.notebook, chapter.uri, data={"execution_seconds": result.time}),
                check_validity=False,
                overwrite=True,
            )
            app._parallel_execution_cached[chapter.docname] = cache_of(chapter).path
    except BaseException:
        if running:
            LOGGER.info("[%s] stopping %d notebooks still executing: %s", TYPE, len(running),
                        ", ".join(chapter.docname for chapter in running))
            _stop(running, threads)
        raise
    LOGGER.info("[%s] executed %d notebooks in %.1f seconds, %d at a time", TYPE, done,
                time.perf_counter() - started_all, jobs)


def _write_executed_notebook(app, doctree):
    """Write ``jupyter_execute/<page>.ipynb`` as myst-nb writes it for a notebook it executed itself.

    For a chapter it executes, myst-nb writes the executed notebook (outputs, glue data taken out); for a chapter it
    takes from the cache, the notebook without outputs. This writes, for a chapter executed above, the notebook
    that myst-nb rendered from the cache (its outputs merged in, glue data taken out, as myst-nb's cache client
    does), so that the page's executed notebook is the same as when myst-nb executes the chapter.
    """
    docname = app.env.docname
    if docname not in getattr(app, "_parallel_execution_cached", ()):
        return
    import nbformat
    from jupyter_cache import get_cache
    from myst_nb.ext.glue import extract_glue_data

    nb_config = app.env.mystnb_config
    *folders, name = docname.split("/")
    path = Path(nb_config.output_folder).joinpath(*folders, f"{name}.ipynb")
    try:
        cache_path = app._parallel_execution_cached[docname]
        _, notebook = get_cache(cache_path).merge_match_into_notebook(nbformat.reads(path.read_text("utf8"), 4))
        extract_glue_data(notebook, [0] * len(notebook.cells), _Silent())
        path.write_bytes(nbformat.writes(notebook).encode("utf-8"))
    except Exception as error:  # the notebook without outputs stays (as after any build from the cache)
        LOGGER.debug("[%s] %s: executed notebook not written: %r", TYPE, docname, error)


def setup(app):
    # late: after any handler that changes the list of pages to read
    app.connect("env-before-read-docs", _execute_chapters, priority=900)
    app.connect("doctree-read", _write_executed_notebook)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
