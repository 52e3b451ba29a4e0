"""The registered recommender loads, predicts and is served over HTTP by a Python where seqrec is NOT installed.

The model is logged with ``code_paths=[src/seqrec]`` (see :func:`seqrec.experiment.serve.log_recommender`), so
it must bring the seqrec code with it. The "bare" Python is a venv made with ``--without-pip`` whose only
``.pth`` lists this venv's site-packages: a directory named in a ``.pth`` is appended to ``sys.path`` but its own
``.pth`` files are not read, so MLflow, Keras, TensorFlow and pandas import there while the editable seqrec
install (``__editable__.seqrec-*.pth``) is not seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import isolated_tracking
from scoring_server import alive, post, scoring_server
from seqrec.core.data import ItemCatalogue
from seqrec.core.model import build_model, keras
from seqrec.core.recommend import ServingCatalogue
from seqrec.experiment.serve import Recommender, log_recommender

pytestmark = pytest.mark.slow  # trains or logs models, starts processes

N_ITEMS = 40
MOVIE_IDS = list(range(1000, 1000 + N_ITEMS))  # item i is MovieID 1000 + i, titled "Movie i"
HISTORY = [1000, 1001, 1002]
K = 5
ALIAS_URI = "models:/seqrec@champion"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny untrained recommender logged in its own sqlite store, registered as ``seqrec`` and aliased
    ``champion`` (for subprocesses, the store is in the environment they are given)."""
    root = tmp_path_factory.mktemp("standalone")
    keras.utils.set_random_seed(0)
    model = build_model(n_items=N_ITEMS, hidden=16, embedding=8)
    model_file = root / "scorer.keras"
    model.save(model_file)
    items = ItemCatalogue(movie_ids=np.array(MOVIE_IDS, dtype=np.int64), titles=[f"Movie {i}" for i in range(N_ITEMS)])
    catalogue = ServingCatalogue.build(items, np.arange(N_ITEMS, 0, -1, dtype=np.int64))
    with isolated_tracking(root) as uri:
        with mlflow.start_run():
            info = log_recommender(model_file, catalogue)
        version = mlflow.register_model(info.model_uri, "seqrec").version
        mlflow.MlflowClient().set_registered_model_alias("seqrec", "champion", version)
        expected = Recommender(model, catalogue).recommend(pd.DataFrame({"items": [HISTORY], "k": [K]}))
        yield SimpleNamespace(root=root, tracking_uri=uri, info=info,
                              expected_movie_ids=[int(m) for m in expected.movie_ids[0]])


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """A venv without pip and without seqrec that sees this venv's packages through one ``.pth`` line."""
    root = tmp_path_factory.mktemp("bare-env")
    venv = root / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_packages = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])  # ordered, distinct
    assert all(Path(path).is_dir() for path in ours)
    (Path(site_packages) / "project_deps.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
    # `mlflow models serve --env-manager local` runs `uvicorn` from PATH: give the bare venv its own console
    # script (what installing uvicorn there would write), or PATH would reach this venv's one and its Python
    uvicorn = venv / "bin" / "uvicorn"
    uvicorn.write_text(f"#!{python}\nimport sys\nfrom uvicorn.main import main\n\nif __name__ == '__main__':\n"
                       "    sys.exit(main())\n", encoding="utf-8")
    uvicorn.chmod(0o755)
    workdir = root / "work"  # the cwd of every bare process: nothing importable in it
    workdir.mkdir()
    return SimpleNamespace(venv=venv, python=python, bin=venv / "bin", workdir=workdir)


def _bare_env(bare, tracking_uri: str | None = None) -> dict[str, str]:
    """The environment of the bare processes: no PYTHON* variables, the bare bin first on PATH and this venv's
    bin (where ``python``/``uvicorn`` would reach seqrec) off it."""
    own_bin = str(Path(sys.prefix) / "bin")
    path = [str(bare.bin)] + [entry for entry in os.environ.get("PATH", "").split(os.pathsep)
                              if entry and entry != own_bin and Path(entry).resolve() != Path(own_bin).resolve()]
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PYTHON") and key not in {"VIRTUAL_ENV", "MLFLOW_MODELS_WORKERS"}}
    env.update(PATH=os.pathsep.join(path), TF_CPP_MIN_LOG_LEVEL="2")
    if tracking_uri:
        env.update(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_REGISTRY_URI=tracking_uri)
    return env


def _run_bare(bare, code: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(bare.python), "-c", code], cwd=bare.workdir, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_bare_python_sees_the_dependencies_but_cannot_import_seqrec(bare):
    code = ("import importlib.util\n"
            "missing = [name for name in ('mlflow', 'keras', 'tensorflow', 'pandas', 'numpy', 'uvicorn')\n"
            "           if importlib.util.find_spec(name) is None]\n"
            "assert not missing, missing\n"
            "import seqrec\n")
    done = _run_bare(bare, code, _bare_env(bare), timeout=60)
    assert done.returncode != 0 and "ModuleNotFoundError: No module named 'seqrec'" in done.stderr, done.stderr


def test_the_model_pins_third_party_packages_only(registered):
    requirements = Path(mlflow.pyfunc.get_model_dependencies(ALIAS_URI)).read_text(encoding="utf-8").splitlines()
    lines = [line.strip() for line in requirements if line.strip() and not line.startswith("#")]
    assert not [line for line in lines if "seqrec" in line.lower() or "/" in line or line.startswith("-e")], lines
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    for name in ("mlflow", "keras", "numpy", "pandas"):
        assert pins.get(name) == metadata.version(name), (name, lines)
    tensorflow = [name for name in ("tensorflow-cpu", "tensorflow") if name in pins]
    assert tensorflow and pins[tensorflow[0]] == metadata.version(tensorflow[0]), lines


LOAD_AND_PREDICT = textwrap.dedent("""\
    import importlib.util, json, sys
    from pathlib import Path

    assert importlib.util.find_spec("seqrec") is None, "seqrec is importable before the model is loaded"
    import mlflow, pandas as pd

    downloaded = Path(sys.argv[1])
    downloaded.mkdir()
    model = mlflow.pyfunc.load_model("{uri}", dst_path=str(downloaded))
    out = model.predict(pd.DataFrame({{"items": [{history}], "k": [{k}]}}))

    import seqrec
    code = next(downloaded.rglob("MLmodel")).parent / "code"
    assert Path(seqrec.__file__).resolve().is_relative_to(code.resolve()), (seqrec.__file__, str(code))
    wrapped = type(model.unwrap_python_model())
    assert wrapped.__module__ == "seqrec.experiment.serve", wrapped
    assert Path(sys.modules[wrapped.__module__].__file__).resolve().is_relative_to(code.resolve())
    print("RESULT " + json.dumps({{"movie_ids": [[int(m) for m in ids] for ids in out.movie_ids],
                                   "titles": [list(t) for t in out.titles]}}))
""")


def test_the_registered_model_loads_and_predicts_without_seqrec_installed(registered, bare, tmp_path):
    code = LOAD_AND_PREDICT.format(uri=ALIAS_URI, history=HISTORY, k=K)
    done = subprocess.run([str(bare.python), "-c", code, str(tmp_path / "downloaded")], cwd=bare.workdir,
                          env=_bare_env(bare, registered.tracking_uri), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-5000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    [movie_ids], [titles] = result["movie_ids"], result["titles"]
    assert len(movie_ids) == len(set(movie_ids)) == K
    assert set(movie_ids) <= set(MOVIE_IDS) and not set(movie_ids) & set(HISTORY)
    assert titles == [f"Movie {m - 1000}" for m in movie_ids]
    assert movie_ids == registered.expected_movie_ids  # the same ranking as the installed package gives


# --- the HTTP scoring server in the bare Python ---------------------------------------------------------------


def _session_commands(session: int) -> list[list[str]]:
    """The command lines of the live processes in a session (Linux /proc)."""
    commands = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session:  # after "pid (comm)": state ppid pgrp session
                commands.append((stat.parent / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1])
        except (OSError, IndexError, ValueError):
            continue
    return commands


@pytest.mark.slow
def test_mlflow_models_serve_answers_from_the_bare_python(registered, bare, tmp_path):
    with scoring_server(bare.python, ALIAS_URI, _bare_env(bare, registered.tracking_uri), tmp_path / "server.log",
                    cwd=bare.workdir) as (base, process):
        if Path("/proc/self/stat").exists():  # every Python of the server is the bare one, uvicorn included
            commands = _session_commands(process.pid)
            pythons = [command for command in commands if command and Path(command[0]).name.startswith("python")]
            assert pythons and all(command[0] == str(bare.python) for command in pythons), commands
            assert any(command[1:2] == [str(bare.bin / "uvicorn")] for command in pythons), commands

        status, body = post(f"{base}/invocations", {"dataframe_records": [{"items": HISTORY, "k": K}]})
        assert status == 200, body
        [answer] = body["predictions"]
        assert answer["movie_ids"] == registered.expected_movie_ids
        assert set(answer["movie_ids"]) <= set(MOVIE_IDS) and not set(answer["movie_ids"]) & set(HISTORY)

        status, body = post(f"{base}/invocations", {"dataframe_records": [{"items": "abc"}]})
        assert status == 400 and "items" in body.get("message", ""), (status, body)
        assert alive(base)
