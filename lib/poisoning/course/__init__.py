"""The course's nbgrader assignments: test-cell helpers and the instructor's pipeline.

============================================  =====================================================
module                                        what it holds
============================================  =====================================================
:mod:`poisoning.course.checks`                helpers of the assignments' test cells: compare a
                                              student's function with the reference implementation
                                              while the reference is switched off
:mod:`poisoning.course.cli`                   the instructor CLI ``course`` (release, autograde,
                                              feedback, grades)
:mod:`poisoning.course.grading`               the pipeline behind it: parallel autograding, merging
                                              into the gradebook, feedback, CSV export
:mod:`poisoning.course.sandbox`               the per-student sandbox (resource limits, timeout,
                                              scrubbed environment, no network)
:mod:`poisoning.course.submissions`           reading and collecting a batch of submissions
:mod:`poisoning.course.coursedir`             the course folder and its ``nbgrader_config.py``
============================================  =====================================================

Only :mod:`~poisoning.course.checks` is imported by student notebooks; it needs nothing but NumPy.
"""
