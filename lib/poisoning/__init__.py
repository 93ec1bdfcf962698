"""Reference implementations for the *Data Poisoning* course companion.

Each module holds one idea of the lecture and names the chapter that defines it:

========================================  ==========================================
module                                    chapter
========================================  ==========================================
:mod:`poisoning.data`                     every chapter (offline data sets)
:mod:`poisoning.device`                   every chapter that trains with torch
:mod:`poisoning.display`                  every chapter with a table (numbered, captioned tables)
:mod:`poisoning.threat_model`             "Learning in the benign setting, and the threat model"
:mod:`poisoning.mean_estimation`          "Poisoning the mean"
:mod:`poisoning.svm_attack`               "Poisoning a linear SVM"
:mod:`poisoning.random_data`              "Learning from random data"
:mod:`poisoning.training`                 "Learning from random data" (reused by later chapters; the CNN of
                                          Part III from "Feature collisions")
:mod:`poisoning.sanitization`             "Data sanitization defences"
:mod:`poisoning.influence`                "Influence functions" (Part II)
:mod:`poisoning.feasible_set`             "The influence attack" (Part II)
:mod:`poisoning.influence_attack`         "The influence attack" (Part II)
:mod:`poisoning.feature_collision`        "Feature collisions: poison frogs" (Part III)
:mod:`poisoning.backdoor`                 "Backdoors" (Part III)
:mod:`poisoning.certified`                "Certified defences" (Part IV)
========================================  ==========================================

The grading of the assignments (checks, autograding, ``course``) lives in the separate package ``grading``.
"""

__version__ = "0.1.0"
