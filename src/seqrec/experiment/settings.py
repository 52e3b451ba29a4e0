"""Defaults the experiment layer shares: where studies are stored, the search space, the registered model."""

from __future__ import annotations

import os
from pathlib import Path

# a team stack (seqrec stack up) prints the export that points every worker at its PostgreSQL study store
DEFAULT_STORAGE = os.environ.get("SEQREC_OPTUNA_STORAGE") or "sqlite:///tuning/optuna.db"
DEFAULT_SEARCH_SPACE = Path("tuning/search_space.py")
REGISTERED_MODEL = "seqrec"
CHAMPION = "champion"  # the alias `mlflow models serve -m models:/seqrec@champion` resolves
# what --model takes (evaluate, recommend), as a refusal says it
EXPECTED_MODEL = "a seqrec model (models:/seqrec@champion, runs:/<id>/recommender, a .keras file)"

# MLflow draws a progress bar on stderr for every artifact copy: three for each model a run logs (its input example
# is checked by loading the model back), one for each model a command loads. Off unless set to true.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
