# nbgrader configuration of the course (nbgrader 0.9.x): https://nbgrader.readthedocs.io/en/stable/configuration/
#
# Read by `nbgrader ...` run in this folder and by the instructor CLI `course` (the package lib/grading).
# The course folder is the repository root:
#
#   solutions/<assignment>/   the instructor ("source") notebooks, with solutions and hidden tests (tracked)
#   release/<assignment>/     the student version                     (generated: `course release`)
#   submitted/<student>/...   collected submissions                   (`course autograde`)
#   autograded/<student>/...  executed and scored submissions         (`course autograde`)
#   feedback/<student>/...    HTML feedback per student               (`course feedback`)
#   gradebook.db              the gradebook (SQLite)
#   .grading/                 zip_collect's work folder, logs (`course autograde`), reports (`course similarity`)
# Everything but solutions/ is ignored by git.

import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

# --------------------------------------------------------------------------------------------------
# the course folder
# --------------------------------------------------------------------------------------------------
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.course_id = "data-poisoning"

# --------------------------------------------------------------------------------------------------
# executing notebooks (nbgrader validate, nbgrader autograde)
# --------------------------------------------------------------------------------------------------
# Seconds one cell may run before the kernel is interrupted and the cell counts as failed (nbgrader validate,
# nbgrader's own autograde). `course autograde` executes each submission in a seal of its own instead of
# nbgrader's Execute step and uses this setting as its per-cell limit (`--cell-timeout` overrides it); the seal
# adds memory, CPU-time, wall-clock, process, file-size and output limits (see `course autograde --help`).
c.ExecutePreprocessor.timeout = 60

# A graded cell that a student deleted is put back (and run) when the notebook is autograded.
c.OverwriteCells.add_missing_cells = True

# --------------------------------------------------------------------------------------------------
# collecting submissions (nbgrader zip_collect, used by `course autograde ASSIGNMENT SUBMISSIONS`)
# --------------------------------------------------------------------------------------------------
# Every submitted notebook is named <student_id>_<notebook>.ipynb, e.g. jdoe42_assignment1.ipynb: the
# student id (letters, digits, dots and hyphens, no underscore), an underscore, then the name of the released
# notebook. The collector sees the absolute path of each file, hence the leading `.*/`.
c.FileNameCollectorPlugin.named_regexp = (
    r".*/(?P<student_id>[A-Za-z0-9][A-Za-z0-9.\-]*)_(?P<file_id>[A-Za-z0-9][A-Za-z0-9_\-]*)\.ipynb$"
)
c.FileNameCollectorPlugin.valid_ext = [".ipynb"]
# zip_collect works in <root>/<downloaded>/<assignment>/{archive,extracted}; keep that in the scratch folder.
c.ZipCollectApp.downloaded_directory = ".grading/downloaded"
c.ZipCollectApp.archive_directory = "archive"
c.ZipCollectApp.extracted_directory = "extracted"
# skip notebooks whose name is not one of the assignment's notebooks
c.ZipCollectApp.strict = True

# --------------------------------------------------------------------------------------------------
# feedback (nbgrader generate_feedback, used by `course feedback`)
# --------------------------------------------------------------------------------------------------
# Students see their outputs, scores and the messages of failed hidden tests, but not the hidden tests' code,
# so the assignment can be reused.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests",
]
