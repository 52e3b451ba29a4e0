"""One source of truth for the environment: conda.yaml (what `mlflow run` builds) pins exactly pyproject.toml's
dependencies, on a Python that pyproject accepts, without the test-only packages; the served model pins the same."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from seqrec.experiment.serve import serving_requirements

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def conda_env() -> dict:
    return yaml.safe_load((ROOT / "conda.yaml").read_text(encoding="utf-8"))


def conda_pip_requirements() -> list[str]:
    pip = [entry for entry in conda_env()["dependencies"] if isinstance(entry, dict) and "pip" in entry]
    assert len(pip) == 1, "conda.yaml must list its pip requirements once"
    return pip[0]["pip"]


def normalised(requirements: list[str]) -> set[str]:
    return {str(Requirement(text)) for text in requirements}


def test_conda_pins_exactly_the_project_dependencies():
    assert normalised(conda_pip_requirements()) == normalised(pyproject()["dependencies"])


def test_every_dependency_is_pinned():
    assert all(re.search(r"==\d", text) for text in pyproject()["dependencies"])


def test_conda_python_is_one_that_pyproject_accepts():
    python = next(entry for entry in conda_env()["dependencies"] if isinstance(entry, str)
                  and entry.startswith("python="))
    version = python.removeprefix("python=")
    assert SpecifierSet(pyproject()["requires-python"]).contains(version + ".0")


def test_test_only_packages_stay_out_of_the_run_environment():
    test_only = {Requirement(text).name for text in pyproject()["optional-dependencies"]["test"]}
    assert test_only and not test_only & {Requirement(text).name for text in conda_pip_requirements()}


def test_the_served_model_pins_the_versions_the_project_pins():
    pinned = {Requirement(text).name: Requirement(text).specifier for text in pyproject()["dependencies"]}
    for text in serving_requirements():
        requirement = Requirement(text)
        if requirement.name in pinned:
            assert requirement.specifier == pinned[requirement.name], text

