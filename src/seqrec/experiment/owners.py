"""Which process owns a RUNNING MLflow run or Optuna trial, and whether that process still lives.

A killed process (SIGKILL, OOM killer, power cut of a container) cannot end its MLflow run or its Optuna trial:
both would stay RUNNING for good. So every run and trial that seqrec starts records its owner (:func:`owner`:
host name, pid and the pid's start time, since pids are reused), and the next ``train``, ``tune`` or ``baselines``
on that host ends the runs whose owner is gone (:func:`close_orphaned_runs`; trials: :mod:`seqrec.experiment.tune`).
A run owned on another host, or with no owner recorded, is left alone: its processes cannot be seen from here
(Optuna's heartbeats still fail the trials of a lost worker elsewhere).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Collection, Mapping
from pathlib import Path

import mlflow
from mlflow import MlflowClient

HOST_TAG, PID_TAG, STARTED_TAG = "seqrec.host", "seqrec.pid", "seqrec.pid_started"
CLOSED_TAG = "seqrec.closed_reason"  # why seqrec ended a run that its own process had not


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from the third (state) on; None without such a file.

    The second field, the command name in parentheses, may itself hold spaces and parentheses.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def owner() -> dict[str, str]:
    """This process as the owner of the runs and trials it starts: host, pid and (Linux) the pid's start time
    in clock ticks since boot (field 22 of ``/proc/<pid>/stat``), which tells a reused pid from its first owner."""
    pid = os.getpid()
    found = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid)}
    stat = _proc_stat(pid)
    if stat is not None:
        found[STARTED_TAG] = stat[19]
    return found


def owner_is_gone(recorded: Mapping[str, str]) -> bool:
    """True when ``recorded`` (an :func:`owner`) is a process of this host that no longer runs: no such pid,
    a zombie, or the pid reused by a process started at another time. False for a live owner, an owner on another
    host, no owner recorded, or a platform that cannot tell (neither ``/proc`` nor a safe signal probe)."""
    pid = str(recorded.get(PID_TAG, ""))
    if recorded.get(HOST_TAG) != socket.gethostname() or not pid.isdigit():
        return False
    stat = _proc_stat(int(pid))
    if stat is not None:
        return stat[0] in ("Z", "X") or stat[19] != recorded.get(STARTED_TAG, stat[19])
    if Path("/proc/self/stat").is_file():
        return True  # Linux: no such process
    if os.name != "posix":
        return False  # Windows' os.kill would terminate the process
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another user's live process
    return False


def close_orphaned_runs(keep: Collection[str] = ()) -> list[str]:
    """End as KILLED (end time now, tag ``seqrec.closed_reason``) every RUNNING run of the tracking store's active
    experiments whose owner on this host is gone; one line per run on stderr. Returns their ids.

    ``keep``: runs the caller is about to continue (a resumed training run) and so must not end.
    """
    host = socket.gethostname()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'")
    client, closed = MlflowClient(), []
    for run in runs:
        if run.info.run_id in keep or not owner_is_gone(run.data.tags):
            continue
        pid = run.data.tags[PID_TAG]
        client.set_tag(run.info.run_id, CLOSED_TAG, f"process {pid} on {host} ended without ending this run")
        client.set_terminated(run.info.run_id, "KILLED")
        print(f"seqrec: run {run.info.run_id} ({run.info.run_name}) was left RUNNING by process {pid}, which is gone: "
              "marked KILLED", file=sys.stderr)
        closed.append(run.info.run_id)
    return closed
