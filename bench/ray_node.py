"""A locked-down local Ray node and a bounded wait for a remote one.

Local Ray (no ``--address``): every Ray process binds to the loopback interface only, and
Ray's token authentication stays on with a fresh random token per session, held only in
this process's environment (and inherited by the Ray processes it starts). Loopback binding
stops other machines; the token stops other users of this machine, who can reach
127.0.0.1 too. See docs/ray-security.md.

Ray 2.60 picks the address its servers bind to from the node IP; with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` the node IP is the loopback address (the setting
Ray uses on single-machine platforms), so GCS, raylet, object manager, workers, dashboard
and agents all listen on 127.0.0.1. Ray reads the setting when it is first imported, so
:func:`lockdown_env` also sets it on an already-imported Ray; :func:`check_loopback`
verifies the result after ``ray.init`` and refuses a node that is not on loopback.
"""
from __future__ import annotations

import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time

LOOPBACK_SETTING = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
DEFAULT_CONNECT_TIMEOUT_S = 30.0


class RayStartError(RuntimeError):
    """Ray could not be started or reached (one-line message)."""


def lockdown_env() -> None:
    """Environment of a local Ray: loopback-only binding, token authentication with a
    per-session token unless the user configured one (RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH)."""
    os.environ[LOOPBACK_SETTING] = "0"
    if os.environ.get("RAY_AUTH_MODE", "token") != "disabled":
        # (an explicit RAY_AUTH_MODE=disabled is respected: docs/ray-security.md says what it costs)
        os.environ["RAY_AUTH_MODE"] = "token"
        if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    if "ray" in sys.modules:
        # Ray read these settings when it was imported: make the running interpreter see them too
        # (the Ray processes it starts read them from the environment).
        importlib.import_module("ray._private.ray_constants").ENABLE_RAY_CLUSTER = False
        raylet = importlib.import_module("ray._raylet")
        raylet.Config.initialize("")
        raylet.AuthenticationTokenLoader.instance().reset_cache()


def check_loopback(gcs_address: str) -> None:
    """RayStartError unless the local node's GCS address is a loopback address."""
    host = gcs_address.rsplit(":", 1)[0].strip("[]")
    if not (host.startswith("127.") or host in ("::1", "localhost")):
        raise RayStartError(f"the local Ray node came up on {host}, not on the loopback interface; "
                            f"refusing to run with Ray reachable from other machines")


# ------------------------------------------------------------------ processes of a local node

def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields start after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def descendants(pid: int | None = None) -> dict[int, str]:
    """{pid: start time} of every process below ``pid`` (default: this process); empty
    where /proc is not available. The start time tells a reused pid from the original."""
    if not os.path.isdir("/proc"):
        return {}
    root = os.getpid() if pid is None else pid
    kids = _children_map()
    out: dict[int, str] = {}
    stack = list(kids.get(root, []))
    while stack:
        p = stack.pop()
        t = _start_time(p)
        if t is not None and p not in out:
            out[p] = t
            stack += kids.get(p, [])
    return out


def _alive(procs: dict[int, str]) -> dict[int, str]:
    return {p: t for p, t in procs.items() if _start_time(p) == t and not _zombie(p)}


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def end_processes(procs: dict[int, str], grace_s: float = 1.0) -> dict[int, str]:
    """Wait up to ``grace_s`` for ``procs`` to exit, then SIGTERM, then SIGKILL the rest.

    Only the given processes (recorded by :func:`descendants` while the node ran) are
    signalled, and only while their start time still matches. Returns those still alive."""
    for sig, wait in ((None, grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        left = _alive(procs)
        if sig is not None:
            for p in left:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = _alive(left)
        if not left:
            return {}
    return _alive(procs)


# ------------------------------------------------------------------ remote clusters

_PROBE = """
import json, sys
import ray
ray.init(address=sys.argv[1], logging_level="error", log_to_driver=False)
print("RESOURCES " + json.dumps(ray.cluster_resources()), flush=True)
ray.shutdown()
"""


def probe_cluster(address: str, timeout_s: float) -> dict[str, float]:
    """The resources of the Ray cluster at ``address``, asked by a child process given
    ``timeout_s`` seconds; RayStartError (one line) when nothing answers in time or the
    connection fails. A child can be killed: ``ray.init`` to an address where no GCS answers
    retries for many minutes."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                              timeout=timeout_s, env=dict(os.environ, RAY_DEDUP_LOGS="0"))
    except subprocess.TimeoutExpired:
        raise RayStartError(f"no Ray cluster answered at {address} within {timeout_s:g} s "
                            f"(--connect-timeout sets the wait)") from None
    for line in proc.stdout.splitlines():
        if line.startswith("RESOURCES "):
            return json.loads(line[len("RESOURCES "):])
    lines = [l.strip() for l in proc.stderr.splitlines() if l.strip()]
    reason = next((l for l in reversed(lines) if "Error" in l or "error" in l), lines[-1] if lines else
                  f"exit status {proc.returncode}")
    raise RayStartError(f"cannot connect to the Ray cluster at {address}: {' '.join(reason.split())[:300]}")


# ------------------------------------------------------------------ results on a multi-node cluster

def check_results_reachable(results_dir: str, timeout_s: float = 60.0) -> str:
    """Before runs start on a cluster of several nodes with a local ``results_dir``: ask every
    node whether it sees a marker file written here. UsageError (one line) naming the nodes
    that do not (their runs' results and checkpoints would stay on them); otherwise a note
    to print. Empty for one node or a URI (``s3://``...), which every node reaches alike."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from results.fs import is_local

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2 or not is_local(results_dir):
        return ""
    folder = results_dir
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    marker = os.path.join(folder, f".tmp-reach-{uuid.uuid4().hex}")

    def sees(path: str) -> bool:
        return os.path.exists(path)

    probe = ray.remote(num_cpus=0)(sees)
    with open(marker, "w") as f:
        f.write("reach")
    try:
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(marker)
                for n in nodes]
        try:
            seen = ray.get(refs, timeout=timeout_s)
        except Exception as e:  # a node that cannot run a task in time: say so, do not refuse
            return (f"warning: --results-dir {results_dir} is a local path on a {len(nodes)}-node cluster and not "
                    f"every node answered whether it sees it ({type(e).__name__}); every node must (NFS), or use "
                    f"a URI (s3://..., gs://...)")
    finally:
        os.remove(marker)
    return reachability_verdict(results_dir, nodes, seen)


def reachability_verdict(results_dir: str, nodes: list[dict], seen: list[bool]) -> str:
    """The note for a local ``results_dir`` every node (``ray.nodes()`` entries) sees;
    UsageError (one line) naming the nodes whose ``seen`` is false."""
    from .cli_errors import UsageError

    blind = [f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})" for n, ok in zip(nodes, seen) if not ok]
    if blind:
        raise UsageError(f"--results-dir {results_dir} is a local path that {len(blind)} of the cluster's {len(nodes)} "
                         f"nodes do not see ({', '.join(blind[:5])}): their runs' results and checkpoints would stay "
                         f"on them; use a folder shared by every node at the same path, or a URI (s3://bucket/prefix, "
                         f"gs://...)")
    return (f"--results-dir {results_dir} is a local path: all {len(nodes)} nodes of the cluster see it (checked "
            f"now); nodes that join later must too, or use a URI (s3://..., gs://...)")
