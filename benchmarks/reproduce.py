"""Reproduction benchmark: train RNN-CCE with several seeds on one or more splits and print a table for each.

    python benchmarks/reproduce.py --seeds 5                       # the default configuration, authors' split
    seqrec prepare ../shared/data/ml-1m/ratings.partial.dat /tmp/clean --within-second random
    python benchmarks/reproduce.py --seeds 5 --data ../shared/data/ml1m-split --data /tmp/clean   # both tables
    python benchmarks/reproduce.py --seeds 3 --regime paper --lookahead 1 --cuts-per-user 16 --max-len 30 \
        --epochs 15 --patience 15 --imputed-targets mask    # the authors' training regime and sampler

Two kinds of split, two tables (see docs/protocol-and-data.md, "Same-second ratings"):

* the *authors' split* (or any split prepared with the file's order inside a second): comparison with the paper,
  whose row is printed beside ours; plain sps@10 is the paper's metric;
* a *clean split* (``seqrec prepare --within-second random``): no order inside a second exists to be learned, so
  the tie-aware sps@10 is the figure that transfers to a user's own data. No paper row: other users.

Both tables show the validation figures of the kept epoch too, since defaults are chosen on validation users.
Each seed is an ordinary MLflow run (experiment ``seqrec-benchmark``), so the runs also show in ``mlflow ui``. Run
again, it reuses the finished runs of the same configuration and data (``--rerun`` trains them again) and resumes
an interrupted one from its last epoch: a benchmark longer than a session is run in pieces.
Slow (minutes per seed on 2 CPU cores): this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace

import numpy as np

from seqrec.core.backup import default_backup_dir
from seqrec.core.config import MAX_SEED, TrainConfig
from seqrec.core.data import Split
from seqrec.core.prepare import read_prepare_record
from seqrec.core.sources import load_data
from seqrec.core.ties import with_times
from seqrec.experiment.cli import Parser, add_config_arguments, integer, script_status, seed
from seqrec.experiment.commands import check_k, open_tracking_store, train_config
from seqrec.experiment.errors import ParameterError
from seqrec.experiment.tracking import RunSummary, finished_run, train_run

# Devooght & Bersini (UMAP 2017), Table 3, MovieLens-1M, RNN-CCE.
PAPER = {"sps@10": "33.45 ± 1.17", "recall@10": "7.52", "user_coverage": "87.73", "item_coverage": "669.75"}


def columns(k: int, validation_only: bool = False) -> list[tuple[str, str, float, int]]:
    """The table's columns at cut-off ``k``: (key in a run's :func:`figures`, heading, scale, digits); with
    ``validation_only``, none of the test users'. A held-out pick is the kept epoch's figure on the validation
    users who did not pick it (:func:`seqrec.core.training.held_out_figures`): it compares schedules of different
    lengths without the lift of picking the best of more epochs."""
    shown = [(f"test sps@{k}", f"sps@{k} (%)", 100, 2), (f"test sps_tie@{k}", f"tie-aware sps@{k} (%)", 100, 2),
            (f"test recall@{k}", f"recall@{k} (%)", 100, 2), ("test user_coverage", "user cov. (%)", 100, 2),
            ("test item_coverage", "item cov.", 1, 1), (f"val sps@{k}", f"val sps@{k} (%)", 100, 2),
            (f"val sps_tie@{k}", f"val tie-aware sps@{k} (%)", 100, 2),
            (f"val held_out_sps@{k}", f"val sps@{k}, held-out pick (%)", 100, 2),
            (f"val held_out_sps_tie@{k}", f"val tie-aware, held-out pick (%)", 100, 2),
            ("train_seconds", "train time (s)", 1, 0),
            ("tokens_per_second", "tokens/s", 1, 0)]
    return [column for column in shown if not (validation_only and column[0].startswith("test "))]


def table_head(first: str, shown: list[tuple[str, str, float, int]]) -> str:
    """A Markdown table's heading and rule: ``first`` names the rows, then the ``shown`` columns' headings."""
    return f"| {first} | " + " | ".join(heading for _, heading, _, _ in shown) + " |\n|---|" + "---:|" * len(shown)


def add_seed_arguments(parser: argparse.ArgumentParser, seeds: int = 3) -> None:
    """``--seeds`` and ``--first-seed``: the runs of a row. No abbreviations either: ``--seed 3`` would otherwise
    read as ``--seeds 3``, three runs of seeds 0 to 2."""
    parser.allow_abbrev = False
    parser.add_argument("--seeds", type=integer, default=seeds, help=f"number of seeds (default: {seeds})")
    parser.add_argument("--first-seed", type=seed, default=0,
                        help="the first seed (default: 0): seeds first-seed, first-seed + 1, ...; another seed of a "
                             "row runs on its own, in parallel with the rest")


def seed_range(first_seed: int, seeds: int) -> range:
    """The seeds of a row, checked before any run: at least one, none past numpy's last."""
    if seeds < 1:
        raise ParameterError(f"--seeds: expected at least 1 seed, got {seeds}")
    if first_seed + seeds - 1 > MAX_SEED:
        raise ParameterError(f"--seeds: expected seeds up to {MAX_SEED}, got {seeds} seeds from --first-seed "
                             f"{first_seed}")
    return range(first_seed, first_seed + seeds)


def check_cutoff(k: int, splits: list[Split]) -> None:
    """``--k`` within every split's catalogue, before the first run trains (a run checks it at its end)."""
    for split in splits:
        check_k(k, split.n_items)


def add_validation_only(parser: argparse.ArgumentParser) -> None:
    """``--validation-only``: the benchmarks' way to choose before any test figure shows."""
    parser.add_argument("--validation-only", action="store_true",
                        help="print the validation users' figures only, so that a setting is chosen before any test "
                             "figure shows (a run still logs its test figures to MLflow)")


def is_clean(split: Split) -> bool:
    """Whether ``split`` was prepared with a random order inside each second (``--within-second random``)."""
    return (read_prepare_record(split.directory) or {}).get("within_second") == "random"


def figures(summary: RunSummary) -> dict[str, float | str]:
    """One run's figures, keyed as in :func:`columns`, and its ``run_id`` (the zoo's ensembles load its model)."""
    return {**{f"test {name}": value for name, value in (summary.test or {}).items()},
            **{f"val {name}": value for name, value in summary.val.items()},
            "train_seconds": summary.train_seconds, "tokens_per_second": summary.tokens_per_second,
            "run_id": summary.run_id}


def run_figures(config: TrainConfig, split: Split, rerun: bool = False, verbose: int = 2, show_test: bool = True
                ) -> dict[str, float | str]:
    """The figures of ``config`` on ``split``: from a finished run of this experiment with the same params and data
    (unless ``rerun``), else from a new run, which prints its test table if ``show_test``. The new run backs up
    every epoch, so a benchmark killed mid-run resumes it where it stopped when run again."""
    summary = None if rerun else finished_run(config, split)
    if summary is not None:
        print(f"seed {config.seed}: the figures of finished run {summary.run_id}", file=sys.stderr)
        return figures(summary)
    return figures(train_run(config, split, verbose=verbose, backup_dir=default_backup_dir(config, split.directory),
                             show_test=show_test))


def cell(values: list[float | None], scale: float, digits: int) -> str:
    """Mean ± sample std over the seeds; "–" when a run lacks the figure (no times: no tie-aware metrics)."""
    if not values or any(value is None for value in values):
        return "–"
    scaled = np.asarray(values, dtype=float) * scale
    spread = f" ± {scaled.std(ddof=1):.{digits}f}" if len(scaled) > 1 else ""
    return f"{scaled.mean():.{digits}f}{spread}"


def table(label: str, runs: list[dict[str, float]], paper_row: bool, k: int = 10, validation_only: bool = False
          ) -> str:
    """A Markdown table: our row (mean ± std over the runs) and, for the authors' kind of split, the paper's
    (its figures are at k = 10, on test users: not with ``validation_only``)."""
    shown = columns(k, validation_only)
    lines = [table_head("method", shown),
             f"| {label} | " + " | ".join(cell([run.get(key) for run in runs], scale, digits)
                                          for key, _, scale, digits in shown) + " |"]
    if paper_row and k == 10 and not validation_only:
        paper = [PAPER.get(key.removeprefix("test "), "–") for key, _, _, _ in shown]
        lines.append("| RNN-CCE, paper Table 3 | " + " | ".join(paper) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_seed_arguments(parser)
    parser.add_argument("--rerun", action="store_true",
                        help="train every seed again, even where this experiment has its finished run")
    parser.add_argument("--data", action="append",
                        help="a split (as seqrec train --data); repeat it for one table per split (default: auto)")
    add_validation_only(parser)
    add_config_arguments(parser, defaults=False, skip=("seed",))  # given ones override TrainConfig()
    args = parser.parse_args(argv)

    import mlflow

    overrides = {spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)
                 if spec.name != "seed" and getattr(args, spec.name) is not None}
    base = train_config(**overrides)  # bad options and data refused before the store is touched
    seeds = seed_range(args.first_seed, args.seeds)
    splits = [with_times(load_data(data)) for data in args.data or ["auto"]]
    check_cutoff(base.k, splits)
    open_tracking_store()  # workers started together on a new SQLite store
    mlflow.set_experiment("seqrec-benchmark")
    tables = []
    for split in splits:
        runs = [run_figures(replace(base, seed=seed), split, args.rerun, show_test=not args.validation_only)
                for seed in seeds]
        clean = is_clean(split)
        kind = ("clean split (the tie-aware sps transfers)" if clean
                else "authors' kind of split (compare with the paper)")
        tables.append(f"\n{kind}: {split.directory}\n"
                      + table(f"RNN-CCE, seqrec {base.regime} ({args.seeds} seeds)", runs, not clean, base.k,
                            args.validation_only))
    print("\nconfiguration:", ", ".join(f"{k}={v}" for k, v in vars(base).items() if k != "seed"))
    print("\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/reproduce.py", main))
