"""A Spark standalone cluster on this machine (one master, N workers) from the pip ``pyspark``
distribution, for the cluster tests and benchmarks of the pipelines: a real ``spark://`` master,
executors in their own JVMs and Python workers, nothing shared with the driver but the filesystem.

The pip package has no ``sbin/start-master.sh``, but ``bin/spark-class`` runs the same classes
(``org.apache.spark.deploy.master.Master``, ``...deploy.worker.Worker``); it ``exec``s the JVM, so
the child's PID is the daemon's and stopping it by PID stops the daemon.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from funnel.core.errors import FunnelError
from funnel.core.procs import stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class StandaloneCluster:
    """A running master and its workers; `stop` (always call it, e.g. in a finally) ends them by PID."""
    master_url: str
    ui_url: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def alive_workers(self) -> int:
        with urllib.request.urlopen(self.ui_url + "/json/", timeout=5) as r:
            return int(json.load(r).get("aliveworkers", 0))

    def stop(self) -> None:
        for p in reversed(self.procs):  # workers first, then the master
            stop_process(p, grace_s=15)

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-n:])
                         for p in self.logs if p.exists())


def cluster_env(python: str | None = None) -> dict:
    env = dict(os.environ)
    env.update(SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP="127.0.0.1",
               PYSPARK_PYTHON=python or sys.executable, PYSPARK_DRIVER_PYTHON=python or sys.executable)
    return env


def start_cluster(work_dir: str | Path, workers: int = 2, cores: int = 1, memory: str = "1g",
                  timeout_s: float = 90.0) -> StandaloneCluster:
    """Start a master on 127.0.0.1 and `workers` workers; return once every worker has registered."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    env = cluster_env()
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, ui = free_port(), free_port()
    cluster = StandaloneCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}")

    def launch(name: str, args: list[str]) -> None:
        log = work_dir / f"{name}.log"
        with open(log, "wb") as out:
            cluster.procs.append(subprocess.Popen([spark_class, *args], env=env, stdout=out,
                                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        cluster.logs.append(log)

    try:
        launch("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                          "--webui-port", str(ui)])
        for i in range(workers):
            launch(f"worker-{i}", ["org.apache.spark.deploy.worker.Worker", cluster.master_url,
                                   "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                                   "--webui-port", str(free_port()), "--work-dir", str(work_dir / f"work-{i}")])
        deadline = time.monotonic() + timeout_s
        while True:
            dead = [p.args[1] for p in cluster.procs if p.poll() is not None]
            if dead:
                raise FunnelError(f"Spark standalone daemon exited: {dead}\n{cluster.log_tail()}")
            try:
                if cluster.alive_workers() >= workers:
                    return cluster
            except OSError:
                pass  # the master's web UI is not up yet
            if time.monotonic() > deadline:
                raise FunnelError(f"Spark standalone cluster not up after {timeout_s:.0f}s\n{cluster.log_tail()}")
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise
