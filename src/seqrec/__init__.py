"""RNN-CCE sequence recommender (Devooght & Bersini, UMAP 2017) as an MLflow/Optuna experiment project."""

__version__ = "0.1.0"
