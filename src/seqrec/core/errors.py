"""Failures of the core that a command reports in one line, in a module light enough for the CLI to import
without Keras (the refused-input errors, :class:`~seqrec.core.data.DataError` and
:class:`~seqrec.core.data.RequestError`, live beside the readers that raise them)."""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """The training loss became nan or infinite: the weights are lost; a lower learning rate is the usual cure."""
