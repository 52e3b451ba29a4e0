"""Keras 3 on TensorFlow, imported here once for the whole package, without TensorFlow's start-up lines.

TensorFlow 2.21 logs through Abseil before anything initialises Abseil's logging, and such lines ignore
``TF_CPP_MIN_LOG_LEVEL``: every seqrec process printed ``WARNING: All log messages before absl::InitializeLog() is
called are written to STDERR`` and ``I0000 ... oneDNN custom operations are on ...`` twice (once per TensorFlow
library), above a command's own output, its one line for bad input included. So the import runs with the
process's stderr (file descriptor 2) caught in a temporary file, and what was caught goes back to stderr without
those lines: a warning or an error that TensorFlow prints while loading still shows. Later lines are TensorFlow's
to print (docs/operations.md, "TensorFlow's own lines on stderr").
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own (non-Abseil) INFO and WARNING lines

STDERR = 2
NOTICE = re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called")  # Abseil not set up
INFO_RECORD = re.compile(rb"^I\d{4} ")  # an Abseil INFO line: "I", month and day ("I0000 00:00:...")


def without_startup_noise(caught: bytes, info_shown: bool = False) -> bytes:
    """``caught`` without Abseil's notice and, unless ``info_shown``, without its INFO lines; every other line
    (TensorFlow's warnings and errors, Python's) as it was."""
    return b"".join(line for line in caught.splitlines(keepends=True)
                    if not NOTICE.match(line) and (info_shown or not INFO_RECORD.match(line)))


def info_lines_asked() -> bool:
    """Whether ``TF_CPP_MIN_LOG_LEVEL`` asks for INFO lines (0); seqrec sets it to 2 unless it is set."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() in ("", "0")


@contextlib.contextmanager
def startup_lines_filtered() -> Iterator[None]:
    """Run the block with file descriptor 2 (where TensorFlow's C++ code writes, whatever ``sys.stderr`` is) caught,
    then write what it caught back, less the start-up lines (INFO lines stay where ``TF_CPP_MIN_LOG_LEVEL`` is 0).
    Without a descriptor 2, or a writable temporary folder, the block runs as it is."""
    try:
        caught = tempfile.TemporaryFile()
        saved = os.dup(STDERR)
    except OSError:
        yield
        return
    with caught:
        _flush_python_stderr()
        os.dup2(caught.fileno(), STDERR)
        try:
            yield
        finally:
            _flush_python_stderr()
            os.dup2(saved, STDERR)
            os.close(saved)
            caught.seek(0)
            kept = without_startup_noise(caught.read(), info_lines_asked())
            while kept:
                kept = kept[os.write(STDERR, kept):]


def _flush_python_stderr() -> None:
    if sys.stderr is not None:
        sys.stderr.flush()


with startup_lines_filtered():
    import keras
    import tensorflow as tf

__all__ = ["keras", "tf"]
