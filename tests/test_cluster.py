"""Real Ray clusters on this machine, locked down like the suite's local Ray (loopback only,
token authentication):

- two nodes (``ray.cluster_utils.Cluster``): the head has no CPU, so every run is placed on
  the second node; their results land in the results directory the driver reads, the
  driver checks before starting that every node sees that (local) folder, and
  ``--log-to tensorboard`` writes validation metrics only;
- ``ray start --head`` + ``ray job submit --working-dir . -- python -m bench.run --suite smoke``:
  the job succeeds and its results land in the given results directory; the job client
  needs the token (``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` in its environment).

Other sessions' Ray instances run on this machine: only the processes started here are
stopped (``Cluster.shutdown()``, then by pid from this process's tree); never ``ray stop``.
"""
from __future__ import annotations

import os
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pytest

from bench.ray_node import descendants, end_processes
from bench.suites import SUITES, expand
from results import ResultStore

pytestmark = [pytest.mark.ray, pytest.mark.cluster]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _event_tags(path: str) -> set[str]:
    """Scalar tags in a TensorBoard event file (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2

    tags = set()
    with open(path, "rb") as f:
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            f.read(4)
            ev = event_pb2.Event()
            ev.ParseFromString(data)
            tags |= {v.tag for v in ev.summary.value}
    return tags


@pytest.fixture
def two_nodes():
    from ray.cluster_utils import Cluster

    from bench import ray_node

    ray_node.lockdown_env()  # as the suite's local Ray: loopback only, a token of this session
    before = descendants()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "dashboard_port": _free_port(),
                                                            "object_store_memory": 100 * 1024 ** 2})
    cluster.add_node(num_cpus=2, object_store_memory=100 * 1024 ** 2)
    procs = {p: t for p, t in descendants().items() if p not in before}
    try:
        yield cluster
    finally:
        cluster.shutdown()
        end_processes(procs)


def test_two_node_cluster_runs_land_in_the_results_dir_the_driver_reads(two_nodes, tmp_path, capsys):
    import ray

    from bench.run import main

    res = tmp_path / "res"
    args = ["--address", two_nodes.address, "--suite", "smoke", "--datasets", "two_circles", "--algorithms",
            "supervised,pseudo_label+meta_semi", "--results-dir", str(res), "--log-to", "tensorboard"]
    assert main(args) == 0
    out = capsys.readouterr().out
    print(out[-2500:])
    assert "all 2 nodes of the cluster see it" in out  # a local results path was checked on every node
    runs = ResultStore(res).load_runs()
    assert len(runs) == 2 and set(runs["status"]) == {"ok"}
    assert len(ResultStore(res).load_evals()) > 0
    # The runs could only be placed on the second node: the head node has no CPU.
    ray.init(address=two_nodes.address, logging_level="error", log_to_driver=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        assert sorted(n["Resources"].get("CPU", 0) for n in nodes) == [0, 2]
        assert all(n["NodeManagerAddress"].startswith("127.") for n in nodes)  # loopback only
    finally:
        ray.shutdown()
    # TensorBoard: validation metrics and progress only, never a test metric.
    events = [os.path.join(d, f) for d, _, fs in os.walk(res / "ray") for f in fs if f.startswith("events.out")]
    assert len(events) == 2, events
    tags = set().union(*(_event_tags(e) for e in events))
    assert any("val_error_ema" in t for t in tags), tags
    assert not [t for t in tags if "test" in t.lower()], tags


def _wait_for(cmd: list[str], env: dict, until, timeout: float) -> subprocess.CompletedProcess:
    deadline = time.time() + timeout
    while True:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if until(p) or time.time() > deadline:
            return p
        time.sleep(2)


@pytest.mark.timeout(900)
def test_ray_job_submit_of_the_smoke_suite_lands_its_results(tmp_path):
    res = tmp_path / "res"
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's socket paths live under it
    dash = _free_port()
    token = secrets.token_hex(32)
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("RAY_ADDRESS", None)
    env.pop("PYTHONPATH", None)  # the job imports the project from its uploaded working dir
    # Free ports of our own: other sessions' Ray instances hold the defaults (e.g. the dashboard agent's 52365).
    ports = [a for flag in ("--port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                            "--metrics-export-port", "--runtime-env-agent-port", "--ray-client-server-port")
             for a in (flag, str(_free_port()))]
    head = subprocess.Popen([RAY, "start", "--head", "--block", *ports, "--num-cpus", "2",
                             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--temp-dir", temp,
                             "--object-store-memory", str(200 * 1024 ** 2), "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    tree: dict = {}
    try:
        up = _wait_for([RAY, "job", "list", "--address", address], env, lambda p: p.returncode == 0, 180)
        assert up.returncode == 0, up.stdout[-1000:] + up.stderr[-1000:]
        tree = descendants(head.pid)
        no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
        refused = subprocess.run([RAY, "job", "list", "--address", address], env=no_token, capture_output=True,
                                 text=True, timeout=120)
        assert refused.returncode != 0  # the job client needs the token

        # The head's job agent starts a little after the dashboard answers: retry while it says so.
        submit = _wait_for([RAY, "job", "submit", "--address", address, "--working-dir", REPO, "--no-wait", "--",
                            "python", "-m", "bench.run", "--suite", "smoke", "--datasets", "two_circles",
                            "--results-dir", str(res)], env,
                           lambda p: p.returncode == 0 or "No available agent" not in p.stderr + p.stdout, 180)
        assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-2000:]
        job = next(w.strip("'") for w in submit.stdout.split() if w.strip("'").startswith("raysubmit_"))
        # `ray job status` prints "Job '...' succeeded" / "... failed" / "... was stopped" once the job ends
        # (on stdout or, for the last two, stderr), else "Status for job '...': RUNNING".
        ended = ("succeeded", "failed", "was stopped")
        status = _wait_for([RAY, "job", "status", "--address", address, job], env,
                           lambda p: any(s in (p.stdout + p.stderr).lower() for s in ended), 700)
        logs = subprocess.run([RAY, "job", "logs", "--address", address, job], env=env, capture_output=True,
                              text=True, timeout=120)
        print(logs.stdout[-2500:])
        assert f"Job '{job}' succeeded" in status.stdout, status.stdout + status.stderr + logs.stdout[-3000:]
        assert f"joined the Ray cluster at 127.0.0.1:{ports[1]}" in logs.stdout  # the job's cluster, not a Ray of its own
        n_runs = len(expand(SUITES["smoke"], datasets=["two_circles"]))
        assert f"{n_runs} runs in the table (0 missing)" in logs.stdout
    finally:
        tree.update(descendants(head.pid))
        tree[head.pid] = ""
        for p in list(tree):
            try:
                os.kill(p, 15)
            except OSError:
                pass
        head.wait(timeout=60)
        end_processes({p: t for p, t in tree.items() if t})
    runs = ResultStore(res).load_runs()
    assert len(runs) == n_runs and set(runs["status"]) == {"ok"}, runs[["algorithm", "status"]]
    assert (runs["suite"] == "smoke").all()
