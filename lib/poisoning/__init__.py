"""Reference implementations for the *Data Poisoning* course companion.

Each module holds one idea of the lecture and names the chapter that defines it:

========================================  ==========================================
module                                    chapter
========================================  ==========================================
:mod:`poisoning.data`                     every chapter (offline data sets)
:mod:`poisoning.device`                   every chapter that trains with torch
:mod:`poisoning.mean_estimation`          "Poisoning the mean"
:mod:`poisoning.course`                   the assignments and the instructor CLI
========================================  ==========================================
"""

__version__ = "0.1.0"
