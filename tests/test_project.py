"""The project's form without training anything: one CLI with --help on every command, and an MLproject whose
entry points are those commands with typed params."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from seqrec.core.config import TrainConfig
from seqrec.experiment.cli import main

ROOT = Path(__file__).resolve().parents[1]


COMMANDS = ("prepare", "train", "evaluate", "recommend", "tune", "baselines", "report")


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    shown = capsys.readouterr().out
    assert exit_.value.code == 0 and all(name in shown for name in COMMANDS)
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0 and f"usage: seqrec {command}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train_help = capsys.readouterr().out
    assert all(f"--{flag}" in train_help for flag in ("hidden", "max-len", "regime", "cell", "seed", "data"))


def test_every_entry_point_is_one_seqrec_command():
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    for name, entry in spec["entry_points"].items():
        command = "train" if name == "main" else name
        assert entry["command"].startswith(f"PYTHONPATH=src:$PYTHONPATH python -m seqrec {command} "), name
        for param, declared in entry["parameters"].items():
            assert f"{{{param}}}" in entry["command"], (name, param)
            default = declared.get("default") if isinstance(declared, dict) else None
            assert not isinstance(default, bool), f"{name}.{param}: a boolean is the string 'true' or 'false'"
            if isinstance(default, str) and default.lower() in ("true", "false"):
                assert declared["type"] == "string" and default in ("true", "false"), (name, param)
            if isinstance(default, int) and not isinstance(default, bool):
                assert declared["type"] == "int", (name, param)


def test_mlproject_main_declares_every_train_parameter_with_its_default():
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert spec["conda_env"] == "conda.yaml"
    params = spec["entry_points"]["main"]["parameters"]
    assert set(params) == {f.name for f in fields(TrainConfig)} | {"data"}
    for field in fields(TrainConfig):
        default = params[field.name]["default"]
        if isinstance(field.default, bool):
            assert params[field.name]["type"] == "string" and default == str(field.default).lower()
        elif isinstance(field.default, int):
            assert params[field.name]["type"] == "int" and default == field.default
        elif isinstance(field.default, float):
            assert params[field.name]["type"] == "float" and float(default) == field.default
        else:
            assert default == field.default
        assert f"{{{field.name}}}" in spec["entry_points"]["main"]["command"]
