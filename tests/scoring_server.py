"""`mlflow models serve` for tests: started on a free loopback port, waited for, always stopped (process group)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from seqrec.experiment.stack import end_child_group


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: str | dict) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of a POST; ``body`` as text (possibly not JSON) or as a dict."""
    data = (body if isinstance(body, str) else json.dumps(body)).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def alive(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def scoring_server(python: str | Path, model_uri: str, env: dict[str, str], log_path: Path,
                   cwd: Path | None = None, timeout_s: float = 180) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m mlflow models serve -m model_uri --env-manager local`` on 127.0.0.1: yields (base URL, process)
    once /ping answers; the whole process group (uvicorn runs in a child) is stopped on the way out."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen([str(python), "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager",
                                    "local", "-h", "127.0.0.1", "-p", str(port)], cwd=cwd, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not alive(base):
            assert process.poll() is None, log_path.read_text()[-5000:]
            assert time.monotonic() < deadline, (f"the scoring server did not answer /ping in {timeout_s:.0f} s:\n"
                                                 + log_path.read_text()[-3000:])
            time.sleep(0.5)
        yield base, process
    finally:
        end_child_group(process)
