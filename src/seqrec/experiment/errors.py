"""The two failures a ``seqrec`` command reports without a traceback, in a module light enough for every command
to import (the CLI maps them to exit statuses 2 and 1)."""

from __future__ import annotations


class ParameterError(ValueError):
    """A parameter out of its range; the message names it and what was expected."""


class TuningError(RuntimeError):
    """The study has no completed trial to pick a model from."""


class StackError(RuntimeError):
    """The team stack (PostgreSQL, the MLflow server) could not be started or stopped; the message says why."""
