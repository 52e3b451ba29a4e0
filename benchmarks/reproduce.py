"""Reproduction benchmark: train RNN-CCE with several seeds and print test metrics beside the paper's row.

    python benchmarks/reproduce.py --seeds 3                  # the default configuration
    python benchmarks/reproduce.py --seeds 3 --regime paper --lookahead 1 --cuts-per-user 16 --max-len 30 \
        --epochs 15 --patience 15 --imputed-targets mask    # the authors' training regime and sampler

Each seed is an ordinary MLflow run (experiment ``seqrec-benchmark``), so the runs also show in ``mlflow ui``.
Slow (minutes per seed on 2 CPU cores): this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace

import numpy as np

from seqrec.core.sources import load_data
from seqrec.experiment.cli import Parser, add_config_arguments, integer
from seqrec.core.config import TrainConfig
from seqrec.experiment.tracking import train_run

# Devooght & Bersini (UMAP 2017), Table 3, MovieLens-1M, RNN-CCE.
PAPER = {"sps@10": (33.45, 1.17), "recall@10": (7.52, None), "user_coverage": (87.73, None),
         "item_coverage": (669.75, None)}
COLUMNS = ["sps@10", "recall@10", "user_coverage", "item_coverage", "train_seconds", "train_tokens_per_second"]


def _cell(values: list[float], scale: float, digits: int) -> str:
    values = np.asarray(values, dtype=float) * scale
    spread = f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else ""
    return f"{values.mean():.{digits}f}{spread}"


def table(label: str, runs: list[dict[str, float]]) -> str:
    header = "| method | sps@10 (%) | recall@10 (%) | user cov. (%) | item cov. | train time (s) | tokens/s |"
    rule = "|---|---|---|---|---|---|---|"
    ours = [_cell([run[c] for run in runs], 1 if c in ("item_coverage", "train_seconds", "train_tokens_per_second")
                  else 100, 0 if c in ("train_seconds", "train_tokens_per_second") else 2) for c in COLUMNS]
    paper = [f"{m:.2f}" + (f" ± {s:.2f}" if s else "") for m, s in PAPER.values()] + ["–", "–"]
    return "\n".join([header, rule, f"| {label} | " + " | ".join(ours) + " |",
                      "| RNN-CCE, paper Table 3 | " + " | ".join(paper) + " |"])


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=integer, default=3, help="number of seeds (first-seed, first-seed + 1, ...)")
    parser.add_argument("--first-seed", type=integer, default=0, help="the first seed (default: 0)")
    parser.add_argument("--data", default="auto")
    add_config_arguments(parser, defaults=False, skip=("seed",))  # given ones override TrainConfig()
    args = parser.parse_args(argv)

    import mlflow

    mlflow.set_experiment("seqrec-benchmark")
    overrides = {spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)
                 if spec.name != "seed" and getattr(args, spec.name) is not None}
    base = replace(TrainConfig(), **overrides)
    split = load_data(args.data)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    summaries = [train_run(replace(base, seed=seed), split) for seed in seeds]
    runs = [{**s.test, "train_seconds": s.train_seconds, "train_tokens_per_second": s.tokens_per_second}
            for s in summaries]
    label = f"RNN-CCE, seqrec {base.regime} ({args.seeds} seeds)"
    print("\nconfiguration:", ", ".join(f"{k}={v}" for k, v in vars(base).items() if k != "seed"))
    print(table(label, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
