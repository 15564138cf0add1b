"""A team MLflow tracking server with a PostgreSQL backend store, on this machine (localhost only).

``python scripts/team_server.py start --dir .team`` creates (first time) a PostgreSQL cluster in ``DIR/pg``,
starts it on 127.0.0.1, creates the ``mlflow`` database, then starts ``mlflow server`` with that database as
its backend store and ``DIR/artifacts`` as the artifact root, and prints the tracking URI. ``stop`` stops
both, ``status`` says what runs. ``make server`` / ``make server-stop`` call it. The PostgreSQL binaries come
from the system's packages (Debian: ``apt-get install postgresql``); the server needs
``pip install 'omni_ml[server]'`` (full MLflow and psycopg2).

PostgreSQL refuses to run as root: when started by root, the cluster is owned by and run as the ``postgres``
system user. The cluster trusts connections from 127.0.0.1 only (``--auth=trust``, ``listen_addresses``):
this is a workstation or CI server; a shared production server needs passwords and TLS.

The module is also imported by the integration test (``tests/tracking/test_team_server.py``): :class:`TeamServer`.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TeamServer", "find_postgres_bin"]


def find_postgres_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (``pg_config --bindir``, Debian's layout, or PATH)."""
    pg_config = shutil.which("pg_config")
    candidates: list[str] = []
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for cand in candidates:
        if cand and (Path(cand) / "initdb").is_file() and (Path(cand) / "pg_ctl").is_file():
            return Path(cand)
    msg = "PostgreSQL server binaries (initdb, pg_ctl) not found. Hint: apt-get install postgresql"
    raise RuntimeError(msg)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TeamServer:
    """PostgreSQL + ``mlflow server`` rooted at ``root`` (state in ``root/state.json``)."""

    root: Path
    pg_port: int = 0
    mlflow_port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: Any = field(default=None, repr=False)

    @property
    def _as_postgres(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def tracking_uri(self) -> str:
        """The MLflow server's URI (``http://127.0.0.1:PORT``)."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def backend_store_uri(self) -> str:
        """The PostgreSQL database behind it (SQLAlchemy URI; psycopg 3 driver)."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/mlflow"

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as_postgres, str(find_postgres_bin() / tool), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=check)

    def start(self, timeout: float = 120.0) -> TeamServer:
        """Start PostgreSQL (initialising the cluster the first time) and the MLflow server; wait until healthy."""
        self.root.mkdir(parents=True, exist_ok=True)
        pg = self.root / "pg"
        self.pg_port = self.pg_port or _free_port()
        self.mlflow_port = self.mlflow_port or _free_port()
        if not (pg / "data" / "PG_VERSION").is_file():
            (pg / "data").mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:  # the cluster belongs to the postgres user, who must reach it
                shutil.chown(pg, "postgres")
                shutil.chown(pg / "data", "postgres")
                self.root.chmod(self.root.stat().st_mode | 0o011)  # let the postgres user reach pg/
                for parent in self.root.parents:
                    if parent.stat().st_mode & 0o001 == 0:
                        msg = f"{parent}: postgres cannot enter it. Hint: a --dir under /tmp, or chmod o+x."
                        raise RuntimeError(msg)
            self._pg("initdb", "-D", str(pg / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -k {pg}"
        self._pg("pg_ctl", "-D", str(pg / "data"), "-l", str(pg / "server.log"), "-o", options, "-w", "start")
        exists = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-tAc",
             "SELECT 1 FROM pg_database WHERE datname = 'mlflow'"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if exists != "1":
            subprocess.run(
                ["createdb", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "mlflow"], check=True
            )
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self._log = log = (self.root / "mlflow_server.log").open("ab")
        self._proc = proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", self.backend_store_uri,
             "--artifacts-destination", str(self.root / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.mlflow_port), "--workers", "1"],
            cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        state = {"pg_port": self.pg_port, "mlflow_port": self.mlflow_port, "mlflow_pid": proc.pid}
        (self.root / "state.json").write_text(json.dumps(state))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log_file = self.root / "mlflow_server.log"
                    msg = f"mlflow server did not start (exit code {proc.poll()}); see {log_file}"
                    raise RuntimeError(msg) from None
                time.sleep(0.5)

    def stop(self) -> None:
        """Stop the MLflow server (its whole process group) and PostgreSQL."""
        state_file = self.root / "state.json"
        if state_file.is_file():
            state = json.loads(state_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(state["mlflow_pid"]), signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.killpg(int(state["mlflow_pid"]), 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(state["mlflow_pid"]), signal.SIGKILL)
            state_file.unlink()
        if self._proc is not None:  # started by this object: reap it
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        data = self.root / "pg" / "data"
        if (data / "postmaster.pid").is_file():
            self._pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop", check=False)

    @classmethod
    def attach(cls, root: Path) -> TeamServer:
        """The server described by ``root/state.json`` (started earlier by ``start``)."""
        state = json.loads((root / "state.json").read_text())
        return cls(root, pg_port=int(state["pg_port"]), mlflow_port=int(state["mlflow_port"]))


def main(argv: list[str] | None = None) -> int:
    """``start``, ``stop`` or ``status`` of the team server in ``--dir``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=Path(".team"), help="state directory (default .team)")
    parser.add_argument("--port", type=int, default=5000, help="MLflow server port (default 5000)")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    if args.action == "start":
        if (root / "state.json").is_file():
            print(f"already running: {TeamServer.attach(root).tracking_uri} (stop it first)", file=sys.stderr)
            return 1
        server = TeamServer(root, mlflow_port=args.port).start()
        print(f"MLFLOW_TRACKING_URI={server.tracking_uri}")
        print(f"backend store: {server.backend_store_uri}; artifacts: {root / 'artifacts'}")
    elif args.action == "stop":
        if (root / "state.json").is_file():
            TeamServer.attach(root).stop()
        else:
            TeamServer(root).stop()
        print("stopped")
    else:
        if (root / "state.json").is_file():
            print(f"running: {TeamServer.attach(root).tracking_uri}")
        else:
            print("not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
