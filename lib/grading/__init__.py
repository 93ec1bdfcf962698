"""Grading the course's nbgrader assignments: the check API of the test cells, and the instructor's pipeline.

============================================  =====================================================
module                                        what it holds
============================================  =====================================================
:mod:`grading.checks`                         the check API, the only module test cells import:
                                              ``check`` and ``check_cases`` (NumPy only)
:mod:`grading.wire`                           outputs of students' functions as plain, safe data
:mod:`grading.verdicts`                       the grader's side: inputs and expected outputs of
                                              every check, recorded from the source notebook, and
                                              the verdict on each test cell
:mod:`grading.seal`                           the bubblewrap sandbox of one submission
:mod:`grading.sealed_run`                     the executor that runs inside it
:mod:`grading.tasks`                          grading one notebook as a plain function (scores,
                                              executed notebook, log), run here or on Dask
:mod:`grading.pipeline`                       release, autograde (sealed, in parallel), feedback,
                                              grades
:mod:`grading.state`                          what autograde has done per student; the lock
:mod:`grading.gradebook`                      every access to nbgrader's gradebook (SQLite or
                                              PostgreSQL)
:mod:`grading.submissions`                    reading and collecting a batch of submissions
:mod:`grading.similarity`                     the code-similarity (plagiarism) report
:mod:`grading.leaderboard`                    students ranked by what the grader measured
:mod:`grading.coursedir`                      the course folder and its ``nbgrader_config.py``
:mod:`grading.cli`                            the instructor's command ``course``
============================================  =====================================================

Student notebooks import :mod:`grading.checks` only. Inside a seal, nothing else of this package exists.
"""
