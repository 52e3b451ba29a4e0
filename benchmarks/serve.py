"""Serving benchmark: recommendations/s of batched pyfunc calls, and single-request latency over HTTP.

    python benchmarks/serve.py --model runs:/<run id>/best_model.keras --data auto
    python benchmarks/serve.py --model models:/seqrec@champion
    python benchmarks/serve.py                       # an untrained model of the real size (3706 items)

``--model`` is the served pyfunc (``models:/seqrec@champion``, ``runs:/<id>/recommender``), a Keras
model (a ``.keras`` file, or a ``runs:/<id>/best_model.keras`` artifact) whose catalogue comes from
``--data``, or nothing: an untrained network of ``--n-items`` x ``--hidden`` x ``--embedding`` with a
synthetic catalogue (the cost of a forward pass does not depend on the weights). A Keras model is
logged as the recommender in a throw-away MLflow store so that ``mlflow models serve`` can serve it.

Histories are the test users' input halves when a split is available (``--data``), else random ones
of 5 to 50 movies. Batched: ``--rounds`` pyfunc ``predict`` calls of ``--batch`` users each, after a
warm-up. HTTP: ``mlflow models serve --env-manager local`` on a free 127.0.0.1 port, ``--requests``
sequential single-user ``POST /invocations`` on one keep-alive connection, after ``--warmup`` ones.
Every loop is bounded and nothing leaves the loopback interface.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from seqrec.experiment.cli import Parser, count, nonblank, positive, script_status
from seqrec.experiment.settings import EXPECTED_MODEL
from seqrec.experiment.stack import end_child_group


def _histories(args: argparse.Namespace, movie_ids: np.ndarray,
               rng: np.random.Generator) -> tuple[list[list[int]], str]:
    """Test users' input halves as MovieIDs (a split of the model's catalogue size), else random histories."""
    if args.data != "none":
        from seqrec.core.sources import load_data
        from seqrec.core.data import split_half

        split = load_data(args.data)
        if len(split.catalogue.movie_ids if split.catalogue is not None else []) == len(movie_ids):
            inputs, _ = split_half(split.test)
            return [movie_ids[inputs.sequence(row)].tolist() for row in range(len(inputs))], "test users' input halves"
    lengths = rng.integers(5, 51, size=500)
    return [rng.choice(movie_ids, size=n, replace=False).tolist() for n in lengths], "random, 5 to 50 movies"


def _keras_model(args: argparse.Namespace, tmp: Path):
    """(scoring model file, ServingCatalogue) of ``--model`` (a Keras model) or of an untrained network."""
    from seqrec.core.recommend import ServingCatalogue

    if args.model is None:
        from seqrec.core.data import ItemCatalogue
        from seqrec.core.model import build_model

        network = build_model(args.n_items, args.hidden, args.embedding)
        path = tmp / "untrained.keras"
        network.save(path)
        rng = np.random.default_rng(0)
        catalogue = ItemCatalogue(np.arange(1, args.n_items + 1), [f"Movie {i}" for i in range(1, args.n_items + 1)])
        return path, ServingCatalogue.build(catalogue, rng.integers(1, 1000, args.n_items))
    from seqrec.core.sources import load_data
    from seqrec.core.scoring import check_catalogue
    from seqrec.experiment.serve import load_model

    path = Path(args.model)
    if not path.is_file():
        import mlflow

        path = Path(mlflow.artifacts.download_artifacts(args.model, dst_path=str(tmp)))
    split = load_data(args.data)
    check_catalogue(load_model(str(path)), split, args.model)
    return path, ServingCatalogue.build(split.catalogue, split.item_popularity)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_latencies(model_uri: str, histories: list[list[int]], args: argparse.Namespace) -> np.ndarray:
    """Seconds per single-user request against ``mlflow models serve`` (started and always stopped here)."""
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port)], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"mlflow models serve exited with {server.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit("mlflow models serve did not answer /ping in 300 s")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", "/ping")
                ping = connection.getresponse()
                ping.read()
                if ping.status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        seconds = []
        for i in range(args.warmup + args.requests):
            body = json.dumps({"dataframe_records": [{"items": histories[i % len(histories)], "k": args.k}]})
            started = time.perf_counter()
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise SystemExit(f"request {i} answered {response.status}: {payload[:300]!r}")
            if i >= args.warmup:
                seconds.append(elapsed)
        connection.close()
        return np.array(seconds)
    finally:
        end_child_group(server)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, type=nonblank(EXPECTED_MODEL),
                        help="pyfunc URI, .keras file or runs:/<id>/best_model.keras (default: an untrained network "
                             "of the sizes below)")
    parser.add_argument("--data", default="auto", type=nonblank("a split directory, 'auto' or 'none'"),
                        help="split for a Keras model's catalogue and the histories; 'none' for random histories")
    parser.add_argument("--n-items", type=positive, default=3706)
    parser.add_argument("--hidden", type=positive, default=256)
    parser.add_argument("--embedding", type=positive, default=128)
    parser.add_argument("--batch", type=positive, default=500, help="users per batched predict call (default: 500)")
    parser.add_argument("--rounds", type=positive, default=10, help="timed batched calls (default: 10)")
    parser.add_argument("--requests", type=positive, default=300,
                        help="timed single-user HTTP requests (default: 300)")
    parser.add_argument("--warmup", type=count, default=20, help="untimed HTTP requests first (default: 20)")
    parser.add_argument("--k", type=positive, default=10)
    args = parser.parse_args(argv)

    import mlflow

    from seqrec.experiment.serve import log_recommender, MODEL_NAME

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model is not None and not args.model.endswith(".keras"):
            uri = args.model  # the served pyfunc itself
        else:
            model_file, catalogue = _keras_model(args, tmp)
            mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
            os.environ["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()  # for the server process
            with mlflow.start_run():
                uri = log_recommender(model_file, catalogue, name=MODEL_NAME).model_uri
        pyfunc = mlflow.pyfunc.load_model(uri)
        movie_ids = pyfunc.unwrap_python_model().catalogue.movie_ids
        histories, source = _histories(args, movie_ids, np.random.default_rng(0))
        batch = pd.DataFrame({"items": [histories[i % len(histories)] for i in range(args.batch)],
                              "k": args.k})
        pyfunc.predict(batch)  # warm-up
        started = time.perf_counter()
        for _ in range(args.rounds):
            out = pyfunc.predict(batch)
        batched = time.perf_counter() - started
        assert len(out) == args.batch and all(len(ids) == args.k for ids in out.movie_ids)
        latencies = http_latencies(uri, histories, args)

    lengths = np.array([len(h) for h in histories])
    print(f"model {args.model or f'untrained {args.n_items} items, hidden {args.hidden}, embedding {args.embedding}'}; "
          f"histories: {len(histories)} ({source}), "
          f"median {np.median(lengths):.0f} movies, max {lengths.max()}; k = {args.k}")
    print("| measure | value |\n|---|---|")
    print(f"| batched pyfunc predict ({args.batch} users x {args.rounds} calls) | "
          f"{args.batch * args.rounds / batched:.0f} recommendations/s ({1000 * batched / args.rounds:.0f} ms a call) |")
    print(f"| HTTP single-user latency, p50 ({len(latencies)} requests) | {1000 * np.percentile(latencies, 50):.1f} ms |")
    print(f"| HTTP single-user latency, p99 | {1000 * np.percentile(latencies, 99):.1f} ms |")
    print(f"| HTTP single-user latency, max | {1000 * latencies.max():.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(script_status("benchmarks/serve.py", main))
