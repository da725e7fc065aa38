"""The committee from its members' probabilities: ``fusion`` (mean, weighted, geometric
rules), ``scoring`` (test and validation scores of members and committee), ``diagnostics``
(calibration, diversity, uncertainty).

NumPy, SciPy and scikit-learn only: no Keras, no Ray. Imports ``members``, ``data`` and the
base modules.
"""
