"""Table 3 of Devooght & Bersini (UMAP 2017), MovieLens-1M: our runs next to the paper's figures.

``seqrec report`` reads the tracking store: the FINISHED runs of every baseline (runs with a ``method`` tag,
from :mod:`seqrec.experiment.baseline_runs`) and of every trained model and loss (param ``regime`` and metric
``test_sps_at_10``; RNN-CCE may be chosen with ``--rnn-run-id``). A row is the configuration of its method's
latest run, as mean ± std over that configuration's seeds (the newest run of each). It writes the table as
Markdown and HTML, logs both files as artifacts of a ``report`` run and prints the Markdown.

Rates are in percent, item coverage is a count of distinct correctly recommended items, all at k on the
test users. A paper figure that could not be confirmed is shown as '–' rather than guessed.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seqrec.core.data import os_error
from seqrec.experiment.errors import ParameterError
from seqrec.experiment.rating_runs import ANCHORS
from seqrec.experiment.records import auto_values, log_params_once, resolved_params, train_defaults

MISSING = "–"

# (column header, metric name without the "test_" prefix ({k} is the cut-off), kind of number)
COLUMNS: list[tuple[str, str, str]] = [
    ("sps@{k} (%)", "sps_at_{k}", "rate"),
    ("tie-aware sps@{k} (%)", "sps_tie_at_{k}", "rate"),  # next burst (see metrics.burst_metrics)
    ("sps hits cut in a burst (%)", "sps_in_burst_at_{k}", "rate"),
    ("recall@{k} (%)", "recall_at_{k}", "rate"),
    ("ndcg@{k} (%)", "ndcg_at_{k}", "rate"),
    ("MRR@{k} (%)", "mrr_at_{k}", "rate"),
    ("user coverage (%)", "user_coverage", "rate"),
    ("item coverage", "item_coverage", "count"),
    ("blockbuster share (%)", "blockbuster_share", "rate"),
    ("diversity", "diversity", "value"),
    ("novelty (bits)", "novelty", "value"),
    ("train time (s)", "train_seconds", "count"),  # a run metric, not a test one
]

# Row order of the table and the name of the same method in the paper.
METHODS: list[tuple[str, str]] = [
    ("POP", "POP"),
    ("MC", "MC"),
    ("KNN", "UKNN"),
    ("MF", "BPR-MF"),
    ("RNN-CCE", "RNN-CCE"),
    ("RNN-Hinge", "RNN-Hinge"),
]

# The paper's Table 3 (ML-1M, k = 10), in the table's units (percent; item coverage a count). Only the
# figures we could confirm; every other cell is shown as '–'.
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "POP": {"sps_at_{k}": 5.0, "recall_at_{k}": 3.62},
    "RNN-CCE": {"sps_at_{k}": 33.45, "recall_at_{k}": 7.52, "user_coverage": 87.73, "item_coverage": 669.75},
    "RNN-Hinge": {"sps_at_{k}": 30.91},
}
PAPER_K = 10

RNN_METHOD = "RNN-CCE"
MODEL_NAMES = {"rnn": "RNN", "sasrec": "SASRec", "cnn": "CNN", "pooling": "Pooling", "mingru": "minGRU"}
LOSS_NAMES = {"cce": "CCE", "hinge": "Hinge", "bpr": "BPR", "pointwise": "pointwise",
              "adaptive_hinge": "adaptive-hinge"}


def trained_method(params: dict[str, str]) -> str:
    """The table row of a training run: its model and loss (runs from before the model zoo are RNN-CCE); the
    RNN with ``cell=lstm`` (Spotlight's LSTM representation) is a row of its own, LSTM-<loss>, and so is a
    softmax that leaves the items already read out (``exclude_seen``), another objective: without its own row
    its latest runs would hide the default's. So is a network served as its blend with SLIST (``slist_weight``).
    An ``auto`` option counts as what it resolved to."""
    params = resolved_params(params)
    model, loss = params.get("model", "rnn"), params.get("loss", "cce")
    name = "LSTM" if model == "rnn" and params.get("cell") == "lstm" else MODEL_NAMES.get(model, model)
    objective = " exclude_seen" if params.get("exclude_seen") == "true" else ""
    if float(params.get("slist_weight") or 0):
        objective += f" + SLIST {float(params['slist_weight']):g}"
    return f"{name}-{LOSS_NAMES.get(loss, loss)}{objective}"


@dataclass(frozen=True)
class Row:
    """One line of the table: a method, where the figures come from and the cells (None = missing)."""

    method: str
    source: str  # "ours (run <id>)", "ours (<n> seeds: ...)", "ours (no run)" or "paper (<name>)"
    values: list[float | None]  # the mean over the row's runs
    run_ids: tuple[str, ...] = ()
    command: str = ""  # how to reproduce our row (empty for the paper's)
    spreads: tuple[float | None, ...] = ()  # sample std over the runs, with two or more


def param_key(text: str) -> str:
    """``text`` as an MLflow param key, which holds only ASCII letters, digits and ``_-. :/`` (a row named
    ``Ensemble sasrec × 5`` becomes ``Ensemble sasrec _ 5``)."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", text)


def run_command(run) -> str:
    """The command that reproduces a run of the table: ``seqrec train`` with the params that differ from the
    defaults, ``seqrec baselines --methods NAME`` or ``seqrec ensemble --runs IDS``."""
    return command_of(run.data.params, run.data.tags)


def command_of(params: dict[str, str], tags: dict[str, str]) -> str:
    if "members" in params:  # an ensemble of finished runs
        return f"seqrec ensemble --runs '{params['members']}'"
    if "regime" not in params:
        seed = f" --seed {params['seed']}" if params.get("seed", "0") != "0" else ""
        return f"seqrec baselines --methods {tags.get('method', '?').lower()}{seed}"
    defaults = train_defaults()
    # an auto option is written where the run used another value than auto gives its model, loss and regime
    expected, params = {**defaults, **auto_values(params)}, resolved_params(params)
    changed = [f"--{name.replace('_', '-')} {params[name]}" for name in defaults
               if name in params and params[name] != expected[name]]
    return " ".join(["seqrec train", *changed])


def group_command(runs: list) -> str:
    """The command of a row's runs: ``--seed S`` in place of the seed when there are several."""
    if len(runs) == 1:
        return run_command(runs[0])
    return command_of({**runs[0].data.params, "seed": "S"}, runs[0].data.tags)


# --------------------------------------------------------------------------------------------- runs


def _experiment_ids(client, experiment_names: list[str] | None) -> list[str]:
    if not experiment_names:
        return [experiment.experiment_id for experiment in client.search_experiments()]
    ids = []
    for name in experiment_names:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise LookupError(f"no MLflow experiment named {name!r}")
        ids.append(experiment.experiment_id)
    return ids


def _finished_runs_with_test_metrics(client, experiment_ids: list[str], k: int) -> list:
    """FINISHED runs that logged ``test_sps_at_k``, newest first (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=f"metrics.test_sps_at_{k} >= 0 and "
                                                                "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def check_cutoff_logged(k: int, experiment_names: list[str] | None) -> None:
    """Refuse a cut-off no finished run logged while runs logged others: the table would be dashes only. An empty
    store (or one of rating runs alone) still gets its table."""
    client = MlflowClient()
    runs = client.search_runs(_experiment_ids(client, experiment_names), "attributes.status = 'FINISHED'",
                              max_results=1000)
    logged = sorted({int(found[1]) for run in runs for name in run.data.metrics
                     if (found := re.fullmatch(r"test_sps_at_(\d+)", name))})
    if logged and k not in logged:  # runs at k that are no table row (an ensemble's) leave the table as it is
        raise ParameterError(f"--k: no finished run logged test metrics at k={k}; the runs logged k = "
                             f"{', '.join(map(str, logged))} (train, evaluate or run the baselines with --k {k})")


def is_clean(run) -> bool:
    """Whether ``run`` was evaluated on a clean split (prepared with ``--within-second random``)."""
    return run.data.params.get("within_second") == "random"


def method_of(run) -> str | None:
    """The table row of a run: a training run's model and loss (:func:`trained_method`), a baseline's ``method``
    tag; None for other runs."""
    if "regime" in run.data.params:
        return trained_method(run.data.params)
    return run.data.tags.get("method")


NOT_CONFIGURATION = ("seed", "data_path")  # the seeds of a row differ; one split may lie at another path elsewhere


def configuration(run) -> dict[str, str]:
    """What the runs of one row share: every param but the seed and the split's path (its checksum is a param).
    A training param that a run did not log counts at its default (:func:`train_defaults`), so the seeds run
    before it existed stay in the row of the runs that log it, and an ``auto`` option counts as what it resolved
    to (:func:`seqrec.experiment.records.resolved_params`)."""
    params = ({**train_defaults(), **resolved_params(run.data.params)} if "regime" in run.data.params
              else run.data.params)
    return {name: value for name, value in params.items() if name not in NOT_CONFIGURATION}


def seed_runs(chosen, runs: list, row_of: Callable = method_of) -> list:
    """The runs of ``chosen``'s row and configuration, the newest of each seed, newest first (``runs`` is)."""
    wanted, row, by_seed = configuration(chosen), row_of(chosen), {}
    for run in runs:
        if row_of(run) == row and configuration(run) == wanted:
            by_seed.setdefault(run.data.params.get("seed"), run)
    return list(by_seed.values())


def check_rnn_run(run_id: str, k: int) -> None:
    """Refuse an ``--rnn-run-id`` the RNN-CCE row could not show: an id the store lacks, a run that is no training
    run (a baseline's, a rating predictor's), or one that did not finish with test metrics at ``k`` (a tuning
    trial, a killed run)."""
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        raise ParameterError(f"--rnn-run-id: no run {run_id!r} in the tracking store {mlflow.get_tracking_uri()}"
                             ) from None
    if "regime" not in run.data.params:
        raise ParameterError(f"--rnn-run-id: expected a seqrec training run, got run {run_id} (it logged no regime)")
    tested = f"test_sps_at_{k}" in run.data.metrics
    if run.info.status != "FINISHED" or not tested:
        raise ParameterError(f"--rnn-run-id: expected a finished training run with test metrics at k={k}, got run "
                             f"{run_id} ({run.info.status}{'' if tested else f', no test_sps_at_{k}'})")


def collect_runs(k: int = 10, rnn_run_id: str | None = None, experiment_names: list[str] | None = None,
                 clean: bool = False) -> dict[str, list]:
    """The runs of each table row, ``{method: [mlflow Run, ...]}`` ([] without one), on the authors' kind of split
    (the order inside a second as in the files) or, with ``clean``, on a clean split: the configuration of the
    method's latest FINISHED run, one run per seed (:func:`seed_runs`).

    Baselines are the runs with a ``method`` tag and no ``regime`` param; training runs (a ``regime`` param;
    tuning trials have no test metrics) are rows by model and loss (:func:`trained_method`): RNN-CCE is the
    latest run of the default model and loss, unless ``rnn_run_id`` is given (it goes to the table of its split,
    with the other seeds of its configuration).
    """
    client = MlflowClient()
    runs = [run for run in _finished_runs_with_test_metrics(client, _experiment_ids(client, experiment_names), k)
            if is_clean(run) == clean]
    chosen: dict[str, list] = {}
    for run in runs:  # newest first: a method's latest run sets its configuration
        method = method_of(run)
        if method is not None and method not in chosen:
            chosen[method] = seed_runs(run, runs)
    if rnn_run_id is not None and is_clean(given := client.get_run(rnn_run_id)) == clean:
        chosen[trained_method(given.data.params)] = seed_runs(given, [given, *runs])
    order = [method for method, _ in METHODS] + sorted(set(chosen) - {method for method, _ in METHODS})
    return {method: chosen.get(method, []) for method in order}


# --------------------------------------------------------------------------------------------- table


RUN_METRIC_FALLBACKS = {"train_seconds": "fit_seconds"}  # a baseline's run logs its fit time as fit_seconds


def _run_value(run, name: str, kind: str, k: int) -> float | None:
    metrics = run.data.metrics
    names = (f"test_{name}", f"test_{name}_at_{k}", name, RUN_METRIC_FALLBACKS.get(name))  # _at_k: diversity@k
    value = next((metrics[found] for found in names if found in metrics), None)
    return None if value is None else (100 * value if kind == "rate" else value)


def _our_values(runs: list, k: int) -> tuple[list[float | None], tuple[float | None, ...]]:
    """Each column's mean and sample std (None with one run) over ``runs``; None where a run lacks the figure."""
    means, spreads = [], []
    for _, template, kind in COLUMNS:
        values = [_run_value(run, template.format(k=k), kind, k) for run in runs]
        known = runs and None not in values
        means.append(float(np.mean(values)) if known else None)
        spreads.append(float(np.std(values, ddof=1)) if known and len(values) > 1 else None)
    return means, tuple(spreads)


def _source(runs: list) -> str:
    if not runs:
        return "ours (no run)"
    if len(runs) == 1:
        return f"ours (run {runs[0].info.run_id[:8]})"
    seeds = sorted((run.data.params.get("seed", "?") for run in runs), key=lambda seed: (len(seed), seed))
    return f"ours ({len(runs)} seeds: {', '.join(seeds)})"


def build_rows(runs: dict[str, list], k: int = 10, with_paper: bool = True) -> list[Row]:
    """Two rows per method, ours (mean ± std over its runs) then the paper's (the paper's only at its own k = 10,
    and ``with_paper``)."""
    paper_names = dict(METHODS)
    rows = []
    for method, group in runs.items():
        values, spreads = _our_values(group, k)
        rows.append(Row(method, _source(group), values, tuple(run.info.run_id for run in group),
                        group_command(group) if group else "", spreads))
        if with_paper and method in paper_names:
            figures = PAPER_TABLE3.get(method, {}) if k == PAPER_K else {}
            rows.append(Row(method, f"paper ({paper_names[method]})",
                            [figures.get(template) for _, template, _ in COLUMNS]))
    return rows


def _number(value: float, kind: str) -> str:
    if kind == "count":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"
    return f"{value:.2f}" if kind == "rate" else f"{value:.4g}"


def _cell(value: float | None, kind: str, spread: float | None = None) -> str:
    if value is None:
        return MISSING
    if spread is None:
        return _number(value, kind)
    if kind == "value":  # the spread to the mean's last shown digit (4 significant ones)
        decimals = max(0, 3 - math.floor(math.log10(abs(value)))) if value else 4
        return f"{value:.{decimals}f} ± {spread:.{decimals}f}"
    return f"{_number(value, kind)} ± {_number(spread, kind)}"


def _table(rows: list[Row], k: int) -> tuple[list[str], list[list[str]]]:
    header = ["method", "source"] + [title.format(k=k) for title, _, _ in COLUMNS] + ["command"]
    body = [[row.method, row.source]
            + [_cell(value, kind, spread) for value, spread, (_, _, kind)
               in zip(row.values, row.spreads or [None] * len(COLUMNS), COLUMNS)]
            + [f"`{row.command}`" if row.command else ""] for row in rows]
    return header, body


CLEAN_CAPTION = ("Clean split (same-second order drawn at random: `seqrec prepare --within-second random`), test "
                 "users, metrics at k={k}: tie-aware sps@{k} is the figure that transfers to a user's own data; the "
                 "paper's figures are on the authors' split.")


def _caption(k: int, data: list[str] | None = None, clean: bool = False) -> str:
    caption = CLEAN_CAPTION.format(k=k) if clean else (
        f"Table 3, MovieLens-1M, test users, metrics at k={k}: our runs (each method's latest configuration, mean ± "
        "std over its seeds) next to Devooght & Bersini (UMAP 2017). '–': not logged / figure not confirmed.")
    return caption + (f" Our data: {', '.join(data)}." if data else "")


def data_of(runs: dict) -> list[str]:
    """The distinct splits the runs were evaluated on: resolved path and the first 12 hex digits of its SHA-256."""
    return sorted({f"{run.data.params['data_path']} (sha256 {run.data.params.get('data_sha256', '?')[:12]})"
                   for group in runs.values() for run in group if "data_path" in run.data.params})


def to_markdown(rows: list[Row], k: int = 10, data: list[str] | None = None, clean: bool = False) -> str:
    header, body = _table(rows, k)
    lines = [_caption(k, data, clean), "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * len(COLUMNS) + ["---"]) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def html_table(rows: list[Row], k: int = 10, data: list[str] | None = None, clean: bool = False) -> str:
    header, body = _table(rows, k)
    return _html(header, body, _caption(k, data, clean), [row.source.startswith("paper") for row in rows])


def _html(header: list[str], body: list[list[str]], caption: str, paper: list[bool]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    lines = []
    for is_paper, cells in zip(paper, body):
        style = ' class="paper"' if is_paper else ""
        tds = "".join(f"<td>{html.escape(cell.strip('`'))}</td>" for cell in cells)
        lines.append(f"<tr{style}>{tds}</tr>")
    return (f"<table>\n<caption>{html.escape(caption)}</caption>\n<thead><tr>{head}</tr></thead>\n"
            "<tbody>\n" + "\n".join(lines) + "\n</tbody>\n</table>\n")


# --------------------------------------------------------------------------------------------- ratings table

RATING_CAPTION = ("Rating prediction (`seqrec ratings`): test RMSE and MAE on a seeded random split of the ratings, "
                  "each predictor's latest configuration, mean ± std over its seeds; the anchors are published "
                  "figures on their own data.")


def rating_predictor(run) -> str | None:
    return run.data.tags.get("rating_predictor")


def collect_rating_runs(experiment_names: list[str] | None = None) -> dict[str, list]:
    """The FINISHED rating-prediction runs of each predictor (tag ``rating_predictor``): its latest run's
    configuration, one run per seed (:func:`seed_runs`)."""
    client = MlflowClient()
    runs = client.search_runs(_experiment_ids(client, experiment_names),
                              "tags.rating_predictor LIKE '%' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1000)
    chosen: dict[str, list] = {}
    for run in runs:
        if rating_predictor(run) not in chosen:
            chosen[rating_predictor(run)] = seed_runs(run, runs, rating_predictor)
    return chosen


def _mean_cell(runs: list, metric: str, digits: int) -> str:
    values = [run.data.metrics.get(metric, float("nan")) for run in runs]
    spread = f" ± {np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else ""
    return f"{np.mean(values):.{digits}f}{spread}"


def rating_table(runs: dict[str, list]) -> tuple[list[str], list[list[str]]]:
    header = ["predictor", "source", "RMSE", "MAE", "fit time (s)", "published anchor", "command"]
    body = []
    for name, group in runs.items():
        params = group[0].data.params
        seed = params.get("seed", 0) if len(group) == 1 else "S"
        command = f"seqrec ratings --predictors {name} --seed {seed} --test-share {params.get('test_share', 0.1)}"
        body.append([name, _source(group), _mean_cell(group, "test_rmse", 4), _mean_cell(group, "test_mae", 4),
                     _mean_cell(group, "fit_seconds", 0), ANCHORS.get(name, MISSING), f"`{command}`"])
    return header, body


def html_page(tables: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Table 3</title><style>"
            "table{border-collapse:collapse;font-family:sans-serif;margin-bottom:2em}"
            "th,td{border:1px solid #ccc;padding:4px 8px}"
            "td:nth-child(n+3){text-align:right}tr.paper{color:#555;font-style:italic}</style></head><body>\n"
            + "\n".join(tables) + "</body></html>\n")


def write_report(out_dir: Path, k: int = 10, rnn_run_id: str | None = None,
                 experiment_names: list[str] | None = None) -> tuple[str, str, Path, Path, str]:
    """Build the tables, write ``table3.md``/``table3.html`` into ``out_dir`` and log them in a ``report`` run.

    The first table holds the runs on the authors' kind of split beside the paper's figures; a second one, when
    there are runs on a clean split (``within_second`` = ``random``), holds those. Returns the Markdown, the HTML,
    both paths and the report run id.
    """
    if rnn_run_id is not None:
        check_rnn_run(rnn_run_id, k)
    tables = {clean: collect_runs(k, rnn_run_id, experiment_names, clean) for clean in (False, True)}
    if not any(any(runs.values()) for runs in tables.values()):
        check_cutoff_logged(k, experiment_names)
    tables = {clean: runs for clean, runs in tables.items() if not clean or any(runs.values())}
    markdown, html_tables, params, data = [], [], {}, []
    for clean, runs in tables.items():
        rows = build_rows(runs, k, with_paper=not clean)
        shown = data_of(runs)
        markdown.append(to_markdown(rows, k, shown, clean))
        html_tables.append(html_table(rows, k, shown, clean))
        params.update({param_key(f"{'clean_' if clean else ''}run_{method}"): ",".join(run.info.run_id for run in group)
                       or "none" for method, group in runs.items()})
        data += shown
    rating_runs = collect_rating_runs(experiment_names)
    if rating_runs:
        header, body = rating_table(rating_runs)
        markdown.append("\n".join([RATING_CAPTION, "", "| " + " | ".join(header) + " |",
                                    "|" + "|".join(["---", "---", "---:", "---:", "---:", "---", "---"]) + "|"]
                                   + ["| " + " | ".join(cells) + " |" for cells in body]) + "\n")
        html_tables.append(_html(header, body, RATING_CAPTION, [False] * len(body)))
        params.update({param_key(f"rating_run_{name}"): ",".join(run.info.run_id for run in group)
                       for name, group in rating_runs.items()})
    markdown, page = "\n".join(markdown), html_page(html_tables)
    md_path, html_path = out_dir / "table3.md", out_dir / "table3.html"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        md_path.write_text(markdown, encoding="utf-8")
        html_path.write_text(page, encoding="utf-8")
    except OSError as error:  # a file in the way, no permission, a read-only disk: before the report run starts
        raise os_error(out_dir, "a directory to write table3.md and table3.html in", error) from None
    with mlflow.start_run(run_name="report") as run:  # under `mlflow run`: the entry point's run
        mlflow.set_tag("seqrec.kind", "report")
        mlflow.log_params({"k": k, **params})
        log_params_once({"data_path": "; ".join(data) or "none"})  # the splits of the reported runs
        mlflow.log_artifact(str(md_path), artifact_path="report")
        mlflow.log_artifact(str(html_path), artifact_path="report")
    return markdown, page, md_path, html_path, run.info.run_id
