"""The core: data, sampling, the model and its fit, scoring, metrics, baselines and the recommendation logic.

It imports neither MLflow nor Optuna (a test checks this), so it can be used, tested and served on its own.
"""
