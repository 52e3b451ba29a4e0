"""Defaults the experiment layer shares: where studies are stored, the search space, the registered model."""

from __future__ import annotations

from pathlib import Path

DEFAULT_STORAGE = "sqlite:///tuning/optuna.db"
DEFAULT_SEARCH_SPACE = Path("tuning/search_space.py")
REGISTERED_MODEL = "seqrec"
CHAMPION = "champion"  # the alias `mlflow models serve -m models:/seqrec@champion` resolves
