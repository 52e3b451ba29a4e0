"""The experiment layer: MLflow runs, Optuna tuning, the report, the served pyfunc and the ``seqrec`` CLI.

Everything here may import :mod:`seqrec.core`; nothing in the core imports from here.
"""
