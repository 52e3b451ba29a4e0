"""benchmarks/reproduce.py: one table per split, the paper's row only beside the authors' kind of split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from conftest import write_synthetic_split

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"
TINY = ["--hidden", "8", "--embedding", "4", "--max-len", "6", "--batch-size", "16", "--epochs", "1"]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("reproduce_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_split(tmp_path: Path) -> Path:
    """A split prepared with a random order inside each second, from ratings rated in bursts of four."""
    from seqrec.core.prepare import prepare_split

    rng = np.random.default_rng(0)
    lines = [f"{user}::{movie}::{rng.integers(1, 6)}::{1000 + position // 4}"
             for user in range(1, 41) for position, movie in enumerate(rng.choice(30, 12, replace=False) + 1)]
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")
    return prepare_split(tmp_path / "ratings.dat", tmp_path / "clean", n_val=8, n_test=8, within_second="random")


def test_two_splits_give_two_tables_with_the_tie_aware_figures_where_times_are_known(tmp_path, mlflow_tracking,
                                                                                        capsys):
    benchmark = load_benchmark()
    authors_kind, clean = write_synthetic_split(tmp_path / "plain"), clean_split(tmp_path)
    assert benchmark.main(["--seeds", "2", "--data", str(authors_kind), "--data", str(clean), *TINY]) == 0
    printed = capsys.readouterr().out
    plain_table, clean_table = printed.split("\nclean split")
    assert "authors' kind of split" in plain_table and "RNN-CCE, paper Table 3 | 33.45 ± 1.17" in plain_table
    assert "paper" not in clean_table
    ours_plain = next(line for line in plain_table.splitlines() if line.startswith("| RNN-CCE, seqrec"))
    ours_clean = next(line for line in clean_table.splitlines() if line.startswith("| RNN-CCE, seqrec"))
    headings = next(line for line in clean_table.splitlines() if line.startswith("| method")).split(" | ")
    tie = headings.index("tie-aware sps@10 (%)")
    assert ours_plain.split(" | ")[tie] == "–"  # no times in that split: no tie-aware figure, not a made-up one
    assert "±" in ours_clean.split(" | ")[tie]  # two seeds: mean ± std
    sps, tie_aware = (float(ours_clean.split(" | ")[i].split(" ± ")[0]) for i in (1, tie))
    assert sps <= tie_aware
    import mlflow

    runs = mlflow.search_runs(experiment_names=["seqrec-benchmark"])
    assert len(runs) == 4 and set(runs["params.within_second"]) == {"file", "random"}


def test_cell_is_mean_and_sample_std_and_a_dash_when_a_run_lacks_the_figure():
    benchmark = load_benchmark()
    assert benchmark.cell([0.30, 0.40], 100, 2) == "35.00 ± 7.07"
    assert benchmark.cell([0.30], 100, 2) == "30.00"
    assert benchmark.cell([0.30, None], 100, 2) == "–"
