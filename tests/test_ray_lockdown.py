"""A local Ray started by the suite: loopback-only sockets, token authentication, no
processes left after shutdown or Ctrl-C, and a bounded wait for an --address to nothing.

Other sessions' Ray instances may run on this machine: every check looks only at the
processes started here (by pid and process tree).
"""
from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from bench import ray_launch
from bench.ray_node import descendants

pytestmark = pytest.mark.ray
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(target[8:-1])
    except OSError:
        pass
    return out


def _hex_address(text: str) -> str:
    """/proc/net/tcp{,6} local address (little-endian hex words) -> printable IP."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every TCP socket in LISTEN state held by one of ``pids``, read
    from /proc (the same table `ss -ltnp` prints)."""
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in owner:  # 0A: LISTEN
                    ip, port = local.split(":")
                    out.append((owner[inode], _hex_address(ip), int(port, 16)))
    return out


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


@pytest.mark.skipif(not os.path.isdir("/proc/net"), reason="needs Linux /proc")
def test_local_ray_listens_on_loopback_only_with_token_auth():
    import ray

    ray_launch.start_ray(None, 1)
    try:
        @ray.remote
        def pid() -> int:
            return os.getpid()

        ray.get(pid.remote())  # a worker process exists and listens too
        procs = ray_launch.local_ray_processes()
        socks = listening(set(procs))
        names = {_comm(p) for p, _, _ in socks}
        assert {"gcs_server", "raylet"} <= names, names  # the processes that used to listen on 0.0.0.0
        assert any(n.startswith("ray::") for n in names), names  # workers / agents
        exposed = [(p, _comm(p), ip, port) for p, ip, port in socks if not _is_loopback(ip)]
        assert not exposed, exposed
        # Token authentication is on: the dashboard refuses a request without the token.
        token = os.environ["RAY_AUTH_TOKEN"]
        assert os.environ["RAY_AUTH_MODE"] == "token" and len(token) >= 32
        answers = {}
        for _, ip, port in socks:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/version")
            try:
                answers[port] = urllib.request.urlopen(req, timeout=2).status
            except urllib.error.HTTPError as e:
                answers[port] = e.code
            except Exception:
                continue
        refused = [p for p, code in answers.items() if code in (401, 403)]
        assert refused, answers
        with_token = {}
        for port in refused:  # the dashboard answers with the token (agents' HTTP servers have no /api/version)
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/version",
                                         headers={"Authorization": f"Bearer {token}"})
            try:
                with_token[port] = urllib.request.urlopen(req, timeout=5).status
            except urllib.error.HTTPError as e:
                with_token[port] = e.code
        assert 200 in with_token.values(), (answers, with_token)
        assert 401 not in with_token.values() and 403 not in with_token.values(), with_token
    finally:
        ray_launch.stop_ray()
    # The shutdown path ends every process of the node, agents included.
    left = {p: _comm(p) for p in procs if os.path.exists(f"/proc/{p}") and _state(p) != "Z"}
    assert not left, left


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_ctrl_c_exits_130_with_a_true_hint_and_leaves_no_ray_process(tmp_path):
    results = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.run", "--suite", "smoke", "--datasets", "digits", "--algorithms", "supervised",
         "--steps", "100000", "--results-dir", str(results), "--num-cpus", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    try:
        deadline = time.time() + 240
        seen = ""
        while time.time() < deadline:  # wait for the first progress line: the run is training
            line = proc.stdout.readline()
            seen += line
            if " step " in line or proc.poll() is not None:
                break
        assert " step " in seen, seen + (proc.stderr.read() if proc.poll() is not None else "")
        tree = descendants(proc.pid)
        assert tree
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "run the same command again" in err.strip().splitlines()[-1]
    assert "Tuner.restore" not in out + err and "Traceback" not in err
    time.sleep(1)
    left = {p: _comm(p) for p in tree if _state(p) not in ("gone", "Z")}
    assert not left, left


def test_address_to_nothing_fails_fast_with_one_line_and_writes_nothing(tmp_path):
    results = tmp_path / "r"
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--suite", "smoke", "--datasets", "two_circles",
                           "--algorithms", "supervised", "--address", "127.0.0.1:1", "--connect-timeout", "8",
                           "--results-dir", str(results)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    elapsed = time.time() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench.run: error: ") and "127.0.0.1:1" in lines[0], lines
    assert "8 s" in lines[0] and "--connect-timeout" in lines[0]
    assert elapsed < 60, elapsed  # 8 s of waiting plus interpreter and import start-up
    assert not results.exists()
