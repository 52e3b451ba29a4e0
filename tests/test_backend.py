"""TensorFlow's start-up lines stay off a command's stderr; every other line written while it loads still shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from seqrec.core.backend import NOTICE, INFO_RECORD, startup_lines_filtered, without_startup_noise

ROOT = Path(__file__).resolve().parents[1]
CAUGHT = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
          b"I0000 00:00:1796594104.870227    5071 port.cc:153] oneDNN custom operations are on.\n"
          b"W0000 00:00:1796594104.9    5071 cpu.cc:1] a real warning\n"
          b"/site-packages/keras/x.py:3: UserWarning: a Python warning\n"
          b"E0000 00:00:1796594110.376002    5071 util.cc:131] an error")


def test_the_notice_and_info_lines_go_and_every_other_line_stays_as_it_was():
    assert without_startup_noise(CAUGHT) == b"".join(CAUGHT.splitlines(keepends=True)[2:])
    assert without_startup_noise(CAUGHT, info_shown=True) == b"".join(CAUGHT.splitlines(keepends=True)[1:])
    assert without_startup_noise(b"") == b""


def test_what_the_block_writes_to_descriptor_2_comes_back_filtered_even_when_it_raises(capfd):
    try:
        with startup_lines_filtered():
            os.write(2, CAUGHT[:200])
            raise KeyError("inside")
    except KeyError:
        pass
    os.write(2, b"after\n")
    assert capfd.readouterr().err == without_startup_noise(CAUGHT[:200]).decode() + "after\n"


def test_loading_the_models_prints_none_of_tensorflows_start_up_lines():
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    loaded = subprocess.run([sys.executable, "-c", "import seqrec.core.model; print('loaded')"], capture_output=True,
                            env={**env, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
    assert loaded.returncode == 0 and loaded.stdout == b"loaded\n", loaded.stderr
    noise = [line for line in loaded.stderr.splitlines() if NOTICE.match(line) or INFO_RECORD.match(line)]
    assert noise == []
