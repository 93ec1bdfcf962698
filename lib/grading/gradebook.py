"""Every access of the grader to nbgrader's gradebook (besides nbgrader's own steps inside ``autograde``).

The gradebook is written by one writer at a time: the grading threads hold the run's lock around nbgrader's steps
and these functions (:mod:`grading.pipeline`), and nothing inside a seal can reach the file.
"""

from __future__ import annotations

import os

from .coursedir import CourseError

__all__ = ["max_scores", "record_students", "record_failure", "code_score", "code_scores", "cell_scores",
           "grade_rows", "GRADE_COLUMNS"]


def _open(course):
    from nbgrader.api import Gradebook

    return Gradebook(course.db_url, course.course_id)


def max_scores(course, assignment):
    """``(autograded points, written points)`` of an assignment."""
    with _open(course) as gb:
        found = gb.find_assignment(assignment)
        return float(found.max_code_score), float(found.max_written_score)


def record_students(course, students):
    """Add students (e.g. whose every file was invalid) so that the grades list them with 0 points."""
    if students:
        with _open(course) as gb:
            for student in students:
                gb.update_or_create_student(student)


def record_failure(course, assignment, student):
    """A submission that could not be graded: 0 for every autograded cell, flagged for the instructor."""
    with _open(course) as gb:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(assignment, student)
        for notebook in submission.notebooks:
            notebook.flagged = True
            for grade in notebook.grades:
                if grade.cell.cell_type == "code":
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = grade.manual_score is not None
        gb.db.commit()


def code_score(course, assignment, student):
    """``(autograded score, autograded maximum)`` of one student."""
    from nbgrader.api import MissingEntry

    with _open(course) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return 0.0, float(gb.find_assignment(assignment).max_code_score)
        return float(submission.code_score or 0.0), float(submission.max_code_score or 0.0)


def code_scores(course, assignment):
    """``{student: (autograded score, autograded maximum)}`` of every student with a submission of the assignment."""
    from nbgrader.api import MissingEntry

    if not os.path.isfile(course.db_path):
        return {}
    with _open(course) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            return {}
        return {submission.student.id: (float(submission.code_score or 0.0), float(submission.max_code_score or 0.0))
                for submission in found.submissions}


GRADE_COLUMNS = ["student", "assignment", "score", "max_score", "autograded_score", "written_score",
                 "needs_manual_grade"]


def cell_scores(course, assignment, notebook, cell, students):
    """``{student: (auto score, max score)}`` of one graded cell, for the students who have a submission."""
    from nbgrader.api import MissingEntry

    if not os.path.isfile(course.db_path):
        return {}
    scores = {}
    with _open(course) as gb:
        for student in students:
            try:
                submitted = gb.find_submission_notebook(notebook, assignment, student)
            except MissingEntry:
                continue
            for grade in submitted.grades:
                if grade.name == cell:
                    scores[student] = (float(grade.auto_score or 0.0), float(grade.max_score or 0.0))
    return scores


def grade_rows(course):
    """One row per student and assignment in the gradebook (0 points where nothing was submitted)."""
    from nbgrader.api import MissingEntry

    if not os.path.isfile(course.db_path):
        raise CourseError("no gradebook yet: run `course release` and `course autograde` first")
    rows = []
    with _open(course) as gradebook:
        assignments = sorted(gradebook.assignments, key=lambda a: a.name)
        for student in sorted(gradebook.students, key=lambda s: s.id):
            for assignment in assignments:
                try:
                    submission = gradebook.find_submission(assignment.name, student.id)
                except MissingEntry:
                    rows.append({"student": student.id, "assignment": assignment.name, "score": 0.0,
                                 "max_score": float(assignment.max_score), "autograded_score": 0.0,
                                 "written_score": 0.0, "needs_manual_grade": False})
                    continue
                rows.append({"student": student.id, "assignment": assignment.name,
                             "score": float(submission.score), "max_score": float(submission.max_score),
                             "autograded_score": float(submission.code_score),
                             "written_score": float(submission.written_score),
                             "needs_manual_grade": bool(submission.needs_manual_grade)})
    if not rows:
        raise CourseError("the gradebook has no student yet: run `course autograde` first")
    return rows


