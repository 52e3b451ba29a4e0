"""The served model: an MLflow pyfunc that maps a history of MovieIDs to the top-k movies.

The logged model (``recommender``) wraps the saved Keras scoring model, the item catalogue (item index <->
MovieLens MovieID and title) and the training popularity, and is what ``mlflow models serve`` answers
``POST /invocations`` with. Requests and answers are those of :mod:`seqrec.core.recommend`; a refused request
is ``MlflowException(INVALID_PARAMETER_VALUE)``, which the scoring server turns into HTTP 400.
"""

from __future__ import annotations

import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.keras
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

from seqrec.core.data import ITEM_MAPPING_FILE, DataError, write_item_mapping
from seqrec.core.model import keras, model_inputs, n_items_of
from seqrec.core.recommend import (DEFAULT_K, RequestError, ServingCatalogue, load_catalogue, parse_requests,
                                   recommend_movies)
from seqrec.core.scoring import load_keras_model
from seqrec.experiment.settings import EXPECTED_MODEL

MODEL_NAME = "recommender"  # artifact path of the pyfunc in a training run
ARTIFACTS = {"model": "scoring_model.keras", "items": ITEM_MAPPING_FILE, "popularity": "popularity.npy"}

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(Array(DataType.long), "items"), ColSpec(Array(DataType.long), "ratings", required=False),
                   ColSpec(DataType.long, "k", required=False)]),
    outputs=Schema([ColSpec(Array(DataType.long), "movie_ids"), ColSpec(Array(DataType.double), "scores"),
                    ColSpec(Array(DataType.string), "titles"), ColSpec(DataType.boolean, "popularity_fallback"),
                    ColSpec(Array(DataType.long), "unknown_movie_ids"), ColSpec(DataType.string, "warning")]),
)


class Recommender(mlflow.pyfunc.PythonModel):
    """The served model. Logged as code (:func:`log_recommender`); ``load_context`` reads its artifacts."""

    def __init__(self, model: keras.Model | None = None, catalogue: ServingCatalogue | None = None):
        self.model, self.catalogue = model, catalogue

    def load_context(self, context) -> None:
        self.model = keras.models.load_model(context.artifacts["model"], compile=False)
        self.catalogue = load_catalogue(context.artifacts["items"], context.artifacts["popularity"])
        if n_items_of(self.model) != self.catalogue.n_items:
            raise MlflowException(f"the model scores {n_items_of(self.model)} items but its catalogue lists "
                                  f"{self.catalogue.n_items}")
        for shape in ((1, 1), (2, 3)):  # trace the compiled predict step now, not on the first requests
            self.model.predict_on_batch(model_inputs(self.model, np.ones(shape, dtype=np.int32)))

    def recommend(self, model_input: object) -> pd.DataFrame:
        """:func:`parse_requests` then :func:`recommend_movies`; raises :class:`RequestError`."""
        histories, ratings, ks = parse_requests(model_input, self.catalogue.n_items)
        return recommend_movies(self.model, self.catalogue, histories, ks, ratings=ratings)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            return self.recommend(model_input)
        except RequestError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None


def serving_requirements() -> list[str]:
    """Pinned pip requirements of the serving environment (the installed versions), without inference."""
    names = ["mlflow", "keras", "numpy", "pandas", "tensorflow-cpu", "tensorflow"]
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    if any(pin.startswith("tensorflow-cpu==") for pin in pins):
        pins = [pin for pin in pins if not pin.startswith("tensorflow==")]
    return pins


_MODEL_CODE = """\
import mlflow

from seqrec.experiment.serve import Recommender

mlflow.models.set_model(Recommender())
"""
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/seqrec: logged with the model as its code_paths


def log_recommender(model_file: str | Path, catalogue: ServingCatalogue, name: str = MODEL_NAME):
    """Log the pyfunc (in the active run) from a saved scoring model and its catalogue; returns its ModelInfo.

    The model carries the ``seqrec`` package itself (``code_paths``) and pins only third-party packages, so
    ``mlflow models serve`` (any env manager) and ``build-docker`` load it where seqrec is not installed."""
    with tempfile.TemporaryDirectory() as tmp:
        items = write_item_mapping(Path(tmp) / ARTIFACTS["items"], catalogue.movie_ids, catalogue.titles.tolist())
        popularity = Path(tmp) / ARTIFACTS["popularity"]
        np.save(popularity, catalogue.popularity, allow_pickle=False)
        example = pd.DataFrame({"items": [catalogue.movie_ids[:3].tolist()], "k": [min(DEFAULT_K, catalogue.n_items)]})
        code = Path(tmp) / "recommender.py"  # MLflow's "models from code": the model is this script, not a pickle
        code.write_text(_MODEL_CODE, encoding="utf-8")
        return mlflow.pyfunc.log_model(name=name, python_model=str(code), signature=SIGNATURE,
                                       input_example=example, pip_requirements=serving_requirements(),
                                       code_paths=[str(PACKAGE_DIR)],
                                       artifacts={"model": str(model_file), "items": str(items),
                                                  "popularity": str(popularity)})


def load_recommender(uri: str) -> Recommender:
    """The loaded :class:`Recommender` behind a pyfunc URI (``runs:/<id>/recommender``, ``models:/seqrec@champion``)."""
    wrapped = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    if not isinstance(wrapped, Recommender):
        raise MlflowException(f"{uri} is a {type(wrapped).__name__} pyfunc, not a seqrec recommender",
                              error_code=INVALID_PARAMETER_VALUE)
    return wrapped


def load_scorer(uri: str) -> tuple[keras.Model, ServingCatalogue | None]:
    """A saved scoring model and, when it carries one, its :class:`~seqrec.core.recommend.ServingCatalogue`
    (MovieIDs, titles, popularity of its items).

    ``uri``: a ``.keras`` file, or an MLflow model URI (``runs:/<id>/recommender``, ``models:/seqrec@champion``,
    or a model logged in MLflow's Keras flavour) of the serving pyfunc or of a Keras model.
    """
    if Path(uri).suffix == ".keras":
        return load_keras_model(uri), None
    try:
        if "keras" in resolved_model(uri).flavors:
            return mlflow.keras.load_model(uri, load_model_kwargs={"compile": False}), None
        recommender = load_recommender(uri)
    except MlflowException as error:
        raise DataError(uri, None, EXPECTED_MODEL, (error.message or "").splitlines()[0]) from None
    return recommender.model, recommender.catalogue


def resolved_model(uri: str) -> mlflow.models.model.ModelInfo:
    """MLflow's description of the model at ``uri``. A URI no installed artifact store can read is refused as bad
    input here, where it is resolved; what fails later, loading a model found, is not the URI's fault."""
    try:
        return mlflow.models.get_model_info(uri)
    except ImportError as error:  # s3://, gs://, ...: a store whose client library is not installed
        raise DataError(uri, None, EXPECTED_MODEL, f"no client for its store ({error})") from None
    except (ValueError, OSError) as error:  # a URI MLflow's artifact stores cannot read (http:// without its API)
        raise DataError(uri, None, EXPECTED_MODEL, f"{type(error).__name__}: {error}") from None


def load_model(uri: str) -> keras.Model:
    """The scoring model of :func:`load_scorer` (a ``.keras`` file, a Keras or recommender model URI)."""
    return load_scorer(uri)[0]
