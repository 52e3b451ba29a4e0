"""A team's tracking stack on one machine: a PostgreSQL server and an MLflow tracking server on top of it.

    seqrec stack up --dir team-stack        # prints the URIs to export
    seqrec stack status --dir team-stack
    seqrec stack down --dir team-stack

``up`` starts a real PostgreSQL server (Debian's ``postgresql`` package; installed with apt-get when missing and
run as root) in ``DIR/pg/data``, creates the ``mlflow`` and ``optuna`` roles and databases, and starts
``mlflow server`` with that backend store and ``DIR/artifacts`` as the artifact destination. Everything lives in
``DIR``: ``down`` then ``up`` again keeps every run, model version and trial. The passwords are made once and kept in
``DIR/stack.json`` (readable by its owner only). Across machines it is the same stack with ``--host`` set to an
address the workers reach (see ``docs/operations.md``).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from seqrec.experiment.errors import ParameterError, StackError

SUPERUSER = "seqrec"  # the cluster's own superuser (initdb -U); never used by the workers
DATABASES = ("mlflow", "optuna")  # one role and one database each
SERVER_USER = "postgres"  # PostgreSQL refuses to run as root; root runs it as this user (Debian's package adds it)
START_TIMEOUT = 120.0  # seconds for either server to answer


@dataclass
class StackState:
    """What ``DIR/stack.json`` keeps between ``up`` and ``down``."""

    host: str
    pg_port: int
    mlflow_port: int
    passwords: dict[str, str]  # role -> password: the superuser and one per database

    def database_uri(self, name: str) -> str:
        return f"postgresql://{name}:{self.passwords[name]}@{self.host}:{self.pg_port}/{name}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"


# --- where things are ----------------------------------------------------------------------------------------


def postgres_bin(install: bool = True) -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: PATH, then the newest ``/usr/lib/postgresql/*/bin``. Missing,
    Debian's package is installed with apt-get when this process may (root with apt-get), else a clear error."""
    for attempt in range(2):
        found = shutil.which("pg_ctl")
        if found:
            return Path(found).resolve().parent
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda path: int(path.parts[-3]))
        if versions:
            return versions[-1].parent
        if attempt == 0 and install and os.geteuid() == 0 and shutil.which("apt-get"):
            print("seqrec stack: installing PostgreSQL (apt-get install postgresql)", file=sys.stderr)
            environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
                subprocess.run(command, check=False, env=environment, stdout=subprocess.DEVNULL)
    raise StackError("PostgreSQL's server programs (initdb, pg_ctl) were not found on PATH or in "
                     "/usr/lib/postgresql/*/bin; expected them installed (Debian: apt-get install postgresql)")


def server_account() -> pwd.struct_passwd | None:
    """The account that runs PostgreSQL when this process is root (None: run it as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise StackError(f"PostgreSQL cannot run as root and there is no {SERVER_USER!r} user; expected Debian's "
                         "postgresql package (which adds it) or a non-root user running seqrec stack") from None


def as_server(command: list[str], account: pwd.struct_passwd | None) -> list[str]:
    return command if account is None else ["runuser", "-u", account.pw_name, "--", *command]


def check_reachable(directory: Path, account: pwd.struct_passwd | None) -> None:
    """The server account must be able to enter ``directory`` (root's temporary and home folders are often 0700)."""
    if account is None:
        return
    probe = subprocess.run(as_server(["test", "-x", str(directory)], account), check=False)
    if probe.returncode != 0:
        raise StackError(f"{directory}: the {account.pw_name!r} user (PostgreSQL does not run as root) cannot "
                         "enter this directory; expected a --dir that every user may traverse (such as under "
                         "/srv or /var/tmp)")


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pid_alive(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` when that process still runs."""
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


# --- state ---------------------------------------------------------------------------------------------------


DEFAULTS = {"host": "127.0.0.1", "pg_port": 5433, "mlflow_port": 5000}


def load_state(directory: Path, requested: dict[str, object]) -> StackState:
    """The stack's saved state, or a new one (fresh passwords) saved now. ``requested`` (option -> value, None =
    not given) sets a new stack's host and ports; an existing stack keeps its own, so that its URIs never change."""
    path = directory / "stack.json"
    if path.exists():
        try:
            state = StackState(**json.loads(path.read_text()))
        except (ValueError, TypeError) as error:
            raise StackError(f"{path}: expected the stack's saved state (JSON written by seqrec stack up): "
                             f"{error}") from None
        for option, value in requested.items():
            if value is not None and value != getattr(state, option):
                raise ParameterError(f"--{option.replace('_', '-')} {value}: the stack in {directory} was made with "
                                     f"{getattr(state, option)} (stack.json); expected that or a new --dir")
        return state
    settings = {option: DEFAULTS[option] if value is None else value for option, value in requested.items()}
    state = StackState(**settings, passwords={name: secrets.token_urlsafe(18) for name in (SUPERUSER, *DATABASES)})
    directory.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(asdict(state), indent=2))
    return state


def saved_state(directory: Path) -> StackState:
    if not (directory / "stack.json").exists():
        raise ParameterError(f"--dir {directory}: no stack there (no stack.json); expected a directory given to "
                             "seqrec stack up")
    return load_state(directory, {})


# --- PostgreSQL ----------------------------------------------------------------------------------------------


def start_postgres(directory: Path, state: StackState) -> None:
    """initdb on first use, then start the server (TCP on ``state.host`` only, password authentication)."""
    binaries, account = postgres_bin(), server_account()
    check_reachable(directory, account)
    home = directory / "pg"
    home.mkdir(exist_ok=True)
    if account is not None:
        os.chown(home, account.pw_uid, account.pw_gid)
    data = home / "data"
    if not (data / "PG_VERSION").exists():
        password_file = home / "superuser.password"
        password_file.write_text(state.passwords[SUPERUSER])
        if account is not None:
            os.chown(password_file, account.pw_uid, account.pw_gid)
        try:
            run_checked(as_server([str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "-E", "UTF8",
                                   "--auth=scram-sha-256", f"--pwfile={password_file}"], account), "initdb")
        finally:
            password_file.unlink(missing_ok=True)
    if postgres_running(binaries, data, account):
        return
    if not port_free(state.host, state.pg_port):
        raise StackError(f"port {state.pg_port} on {state.host} is taken by another program; expected it free for "
                         "this stack's PostgreSQL (its port is kept in stack.json)")
    options = f"-c listen_addresses={state.host} -p {state.pg_port} -c unix_socket_directories=''"
    run_checked(as_server([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w",
                           "-t", str(int(START_TIMEOUT)), "-o", options, "start"], account),
                f"PostgreSQL (log: {home / 'server.log'})")


def postgres_running(binaries: Path, data: Path, account: pwd.struct_passwd | None) -> bool:
    if not (data / "postmaster.pid").exists():
        return False
    status = subprocess.run(as_server([str(binaries / "pg_ctl"), "-D", str(data), "status"], account),
                            check=False, capture_output=True)
    return status.returncode == 0


def stop_postgres(directory: Path) -> bool:
    data = directory / "pg" / "data"
    binaries, account = postgres_bin(install=False), server_account()
    if not postgres_running(binaries, data, account):
        return False
    run_checked(as_server([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], account),
                "pg_ctl stop")
    return True


def run_checked(command: list[str], what: str) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise StackError(f"{what} failed (exit {done.returncode}): {said[-1] if said else 'no output'}")


def create_databases(state: StackState) -> None:
    """The ``mlflow`` and ``optuna`` roles, each owning its database (made once; their passwords kept)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=state.host, port=state.pg_port, user=SUPERUSER, dbname="postgres",
                         password=state.passwords[SUPERUSER], connect_timeout=10, autocommit=True) as connection:
        for name in DATABASES:
            if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None:
                connection.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(state.passwords[name])))
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                                 sql.Identifier(name)))


# --- the MLflow tracking server ------------------------------------------------------------------------------


def start_mlflow(directory: Path, state: StackState, workers: int = 2) -> None:
    """``mlflow server`` on the ``mlflow`` database, artifacts proxied into ``DIR/artifacts``; waits for /health."""
    pid_file = directory / "mlflow.pid"
    if pid_alive(pid_file) is not None and server_healthy(state.tracking_uri):
        return
    if not port_free(state.host, state.mlflow_port):
        raise StackError(f"port {state.mlflow_port} on {state.host} is taken by another program; expected it free "
                         "for this stack's MLflow server (its port is kept in stack.json)")
    (directory / "artifacts").mkdir(exist_ok=True)
    log = directory / "mlflow.log"
    command = [sys.executable, "-m", "mlflow", "server", "--artifacts-destination",
               str((directory / "artifacts").resolve()), "--host", state.host, "--port", str(state.mlflow_port),
               "--workers", str(workers)]
    # the database URI (with its password) goes by environment, not on the command line that `ps` shows everyone
    environment = {**os.environ, "MLFLOW_BACKEND_STORE_URI": state.database_uri("mlflow")}
    with open(log, "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=environment, start_new_session=True)  # own process group: down stops all
    pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + START_TIMEOUT
    while not server_healthy(state.tracking_uri):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process_group(pid_file)
            lines = log.read_text(errors="replace").strip().splitlines()
            raise StackError(f"the MLflow server did not come up (log: {log}): {lines[-1] if lines else 'no output'}")
        time.sleep(0.5)


def server_healthy(uri: str, timeout: float = 2.0) -> bool:
    return server_problem(uri, timeout) is None


def server_problem(uri: str, timeout: float) -> str | None:
    """Why the MLflow server at ``uri`` does not answer its ``/health``, or None when it does."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as answer:
            return None if answer.status == 200 else f"HTTP {answer.status} from {uri}/health"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code} from {uri}/health"
    except (OSError, ValueError) as error:
        return str(getattr(error, "reason", None) or error)


def stop_process_group(pid_file: Path, wait: float = 20.0) -> bool:
    """SIGTERM the process group of ``pid_file``'s process (the server and its workers), SIGKILL after ``wait``."""
    pid = pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    for sig, patience in ((signal.SIGTERM, wait), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.2)
        if not group_alive(pid):
            break
    pid_file.unlink(missing_ok=True)
    return True


def end_child_group(process: subprocess.Popen, wait: float = 15.0) -> None:
    """SIGTERM a child started with ``start_new_session=True`` and its group, SIGKILL after ``wait``; reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie leader (our own child) still counts as a group until reaped
        return os.waitpid(pgid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


# --- the commands --------------------------------------------------------------------------------------------


def up(directory: Path, host: str | None = None, pg_port: int | None = None,
       mlflow_port: int | None = None) -> StackState:
    """Start (or find running) PostgreSQL and the MLflow server of ``directory``; returns its state. Host and ports
    default to :data:`DEFAULTS` for a new stack and are an existing stack's own otherwise."""
    directory = directory.resolve()
    state = load_state(directory, {"host": host, "pg_port": pg_port, "mlflow_port": mlflow_port})
    start_postgres(directory, state)
    create_databases(state)
    start_mlflow(directory, state)
    return state


def down(directory: Path) -> list[str]:
    """Stop the MLflow server, then PostgreSQL; returns what was stopped. Their data stay in ``directory``."""
    directory = directory.resolve()
    saved_state(directory)
    stopped = ["mlflow server"] if stop_process_group(directory / "mlflow.pid") else []
    return stopped + (["postgresql"] if stop_postgres(directory) else [])


def exports(state: StackState) -> str:
    """The lines a worker's shell evaluates to use the stack."""
    return (f"export MLFLOW_TRACKING_URI={state.tracking_uri}\n"
            f"export SEQREC_OPTUNA_STORAGE={state.database_uri('optuna')}")


def status(directory: Path) -> dict[str, bool]:
    directory = directory.resolve()
    state = saved_state(directory)
    data = directory / "pg" / "data"
    return {"postgresql": postgres_running(postgres_bin(install=False), data, server_account()),
            "mlflow server": server_healthy(state.tracking_uri)}
