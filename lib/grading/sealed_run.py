"""The executor inside the seal: ``python -m grading.sealed_run`` (started by :class:`grading.seal.Seal`).

Before anything else it sets the seal's limits on itself (inherited by the kernel: ``RLIMIT_AS``, ``RLIMIT_CPU``,
``RLIMIT_FSIZE``, ``RLIMIT_NPROC``, no core dumps), makes itself the first choice of the out-of-memory killer,
forbids gaining privileges through ``execve`` (``PR_SET_NO_NEW_PRIVS``) and, when the grader runs as root, drops
to the seal's own unprivileged uid. Then it executes ``/job/notebook.ipynb`` with nbclient (as nbgrader's
``Execute`` step does: errors do not stop the notebook, a cell that runs past the cell timeout is interrupted) in
a kernel of its own, with the assignment's files in the working folder. Before each graded test cell it writes the
cell's id to ``/run/grading/cell``, where the check API (:mod:`grading.checks`) reads it.

It answers with one JSON document on the pipe it was given as standard output: the outputs and execution counts
of the code cells (each cell's outputs at most 1 MB, all of them at most a quarter of ``--output-mb``), the
records of the check API, and an error line if the kernel died. The kernel's own output and everything printed
by this process go to the log. The grader treats the answer as untrusted data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

CELL_OUTPUT_LIMIT = 1024 * 1024


def _lock_down(options):
    """Limits and privileges, before any other code runs here."""
    import resource

    mib = 1024 * 1024
    limits = [
        (resource.RLIMIT_AS, options.memory_mb * mib),
        (resource.RLIMIT_CPU, (options.cpu_seconds, options.cpu_seconds + 5)),
        (resource.RLIMIT_FSIZE, options.file_size_mb * mib),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, options.processes),
    ]
    for which, value in limits:
        soft, hard = value if isinstance(value, tuple) else (value, value)
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(which, (soft, hard))
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS = 38
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if os.geteuid() == 0:
        if options.uid is None or options.uid == 0:
            raise SystemExit("refusing to execute a submission as root")
        os.setgroups([])
        os.setgid(options.gid if options.gid is not None else options.uid)
        os.setuid(options.uid)
        if os.geteuid() == 0 or os.getuid() == 0:
            raise SystemExit("could not drop root's privileges")


def _graded_cell_id(cell):
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if meta.get("grade") and not meta.get("solution") and cell.get("cell_type") == "code":
        return str(meta.get("grade_id", ""))
    return ""


def _client_class():
    from nbclient import NotebookClient

    class SealedClient(NotebookClient):
        """nbclient with a bound on what each cell, and the whole notebook, may print."""

        total_limit = 8 * CELL_OUTPUT_LIMIT

        def output(self, outs, msg, display_id, cell_index):
            out = super().output(outs, msg, display_id, cell_index)
            if out is None:
                return out
            size = len(json.dumps(out, default=str))
            self._sizes = getattr(self, "_sizes", {})
            self._total = getattr(self, "_total", 0)
            cell_size = self._sizes.get(cell_index, 0)
            if cell_size + size <= CELL_OUTPUT_LIMIT and self._total + size <= self.total_limit:
                self._sizes[cell_index] = cell_size + size
                self._total += size
                return out
            if out in outs:  # over a limit: dropped, with one note in the cell
                outs.remove(out)
            noted = getattr(self, "_noted", set())
            self._noted = noted
            if cell_index not in noted:
                noted.add(cell_index)
                from nbformat.v4 import new_output

                outs.append(new_output("stream", name="stderr", text="[output truncated: more than the grader keeps]\n"))
            return out

    return SealedClient


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m grading.sealed_run")
    for name in ("memory-mb", "cpu-seconds", "file-size-mb", "processes", "output-mb", "cell-timeout"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--uid", type=int, default=None)
    parser.add_argument("--gid", type=int, default=None)
    options = parser.parse_args(argv)

    answer = os.fdopen(os.dup(1), "w")  # the pipe to the grader; everything else goes to the log
    os.dup2(2, 1)
    _lock_down(options)

    run_dir = os.environ["GRADING_RUN"]
    job_dir = os.environ["GRADING_JOB"]
    result = {"outputs": {}, "counts": {}, "records": [], "error": None}
    try:
        sys.modules.setdefault("rfc3987_syntax", None)  # an optional dependency of jsonschema that is slow to load
        import shutil

        import nbformat
        from jupyter_client.manager import AsyncKernelManager

        files = os.path.join(job_dir, "files")
        if os.path.isdir(files):
            for name in sorted(os.listdir(files)):
                source = os.path.join(files, name)
                if os.path.isdir(source):
                    shutil.copytree(source, os.path.join(os.getcwd(), name))
                else:
                    shutil.copyfile(source, os.path.join(os.getcwd(), name))
        nb = nbformat.read(os.path.join(job_dir, "notebook.ipynb"), as_version=4)
        cell_file = os.path.join(run_dir, "cell")

        def on_cell_execute(cell, cell_index, **_):
            with open(cell_file, "w") as handle:
                handle.write(_graded_cell_id(cell))

        os.makedirs(os.environ.get("JUPYTER_RUNTIME_DIR", run_dir), exist_ok=True)
        km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(run_dir, "kernel"))
        client = _client_class()(
            nb, km=km, timeout=options.cell_timeout, interrupt_on_timeout=True, allow_errors=True,
            error_on_timeout={"ename": "CellTimeoutError", "evalue": "",
                              "traceback": ["CellTimeoutError: No reply from kernel before timeout"]},
            record_timing=False, extra_arguments=["--HistoryManager.hist_file=:memory:"],
            resources={"metadata": {"path": os.getcwd()}}, on_cell_execute=on_cell_execute)
        client.total_limit = max(CELL_OUTPUT_LIMIT, options.output_mb * 1024 * 1024 // 4)
        try:
            client.execute()
        except Exception as error:  # the kernel died, or did not start
            result["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                result["outputs"][str(index)] = cell.get("outputs", [])
                result["counts"][str(index)] = cell.get("execution_count")
    except BaseException as error:  # report everything, including SystemExit
        result["error"] = f"{type(error).__name__}: {error}"[:300]
    records_path = os.path.join(run_dir, "records.jsonl")
    limit = options.output_mb * 1024 * 1024 // 2
    try:
        with open(records_path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(limit)
        for line in text.splitlines():
            try:
                result["records"].append(json.loads(line))
            except ValueError:
                continue
    except OSError:
        pass
    json.dump(result, answer, default=str)
    answer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
