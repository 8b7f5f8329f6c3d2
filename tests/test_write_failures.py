"""Write failures lose nothing: a full disk or a folder turning read-only mid-suite ends the
command with the summary and one line naming the path and the cause; files already written
are untouched; a re-run completes the missing runs.

A small disk is a tmpfs mounted for the test (root may mount here and in CI); where mounting
is not allowed, the store-level test limits the file size of a child process instead
(RLIMIT_FSIZE: writes past it fail with EFBIG) and the suite-level tests are skipped.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from results import ResultsDirError, ResultStore

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def mounted(target: Path, *options: str):
    """Mount (tmpfs, or a bind mount) at ``target`` for the block; skip the test if not allowed."""
    target.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here: {r.stderr.strip()[:200]}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _tmpfs(target: Path, size: str):
    return mounted(target, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


def _run_row(i: int) -> tuple[dict, list[dict]]:
    rid = f"r{i:04d}"
    row = {"run_id": rid, "suite": "t", "dataset": "d", "n_labels": 10, "split_seed": 0, "seed": i, "split_hash": "h",
           "algorithm": "supervised", "network": "mlp", "steps": 10, "steps_done": 10, "status": "ok",
           "error_message": "", "test_error": 0.1, "val_error": 0.2, "wall_time_s": 1.0, "steps_per_s": 1.0,
           "config_json": "x" * 2000, "python_version": "3", "torch_version": "2", "ray_version": "2",
           "numpy_version": "1", "hostname": "h", "device": "cpu", "cpu_count": 1, "workers": 1, "protocol_notes": "",
           "finished_at": "now"}
    evals = [{"run_id": rid, "step": s, "split": "val", "model": "ema", "error": 0.5, "loss": float(s)} for s in range(200)]
    return row, evals


FILL = textwrap.dedent("""
    import os, resource, sys
    sys.path.insert(0, {repo!r})
    from results import ResultStore, ResultsDirError
    {limit}
    sys.path.insert(0, {tests!r})
    from test_write_failures import _run_row
    store = ResultStore({root!r})
    for i in range(10000):
        try:
            store.write_run(*_run_row(i))
        except ResultsDirError as e:
            print("WRITTEN", i)
            print("ERROR", e)
            break
""")


def _fill_until_error(root: Path, limit: str = "") -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", FILL.format(repo=str(REPO), tests=str(REPO / "tests"), root=str(root),
                                                            limit=limit)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    return int(lines["WRITTEN"]), lines["ERROR"]


def _check_intact(root: Path, written: int) -> None:
    assert not [p for p in root.rglob(".tmp-*")]
    store = ResultStore(root)
    assert sorted(store.load_runs()["run_id"]) == [f"r{i:04d}" for i in range(written)]
    assert store.finished_run_ids() == {f"r{i:04d}" for i in range(written)}
    assert len(store.load_evals()) == 200 * written


def test_full_disk_store_raises_one_line_and_keeps_what_was_written(tmp_path):
    root = tmp_path / "small"
    with _tmpfs(root, "512k"):
        written, err = _fill_until_error(root / "res")
        assert written > 2
        assert "No space left on device" in err and str(root / "res") in err and "\n" not in err
        _check_intact(root / "res", written)


def test_file_size_limit_store_raises_one_line_and_keeps_what_was_written(tmp_path):
    # Without mounting: every write past 16 KiB fails with EFBIG in the writer process.
    limit = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))"
    root = tmp_path / "res"
    ResultStore(root).write_run(*_run_row(0))  # one complete run before the limit
    written, err = _fill_until_error(root, limit)
    assert written == 0 and "File too large" in err and str(root) in err
    _check_intact(root, 1)


def test_engine_records_a_write_error_instead_of_dying(tmp_path):
    from bench.config import RunConfig, RunEnv
    from bench.engine import train_run

    (tmp_path / "a_file").write_text("x")
    cfg = RunConfig.from_dict(dict(dataset="two_circles", algorithm="supervised", network="mlp", n_labels=50, steps=10,
                                   eval_every=5, batch_labeled=16, batch_unlabeled=32))
    out = train_run(cfg, RunEnv(str(tmp_path / "a_file" / "res")))
    # the run's checkpoint manifest (in the results store) cannot be written either, so it stops
    # before its first step instead of training for nothing; the error is reported, not raised
    assert out.status == "failed" and out.run_row["steps_done"] == 0
    assert out.write_error.startswith(f"could not write the results of run {cfg.run_id}: {tmp_path / 'a_file'}")
    assert "Not a directory" in out.write_error and "\n" not in out.write_error


# ------------------------------------------------------------------ suite level (Ray)

def _when_first_run_lands(results: Path, action) -> threading.Thread:
    def watch():
        deadline = time.time() + 300
        while time.time() < deadline:
            d = results / "runs"
            if d.is_dir() and any(not n.startswith(".") for n in os.listdir(d)):
                action()
                return
            time.sleep(0.01)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _snapshot(results: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in results.rglob("*.parquet") if not p.name.startswith(".")}


def _suite(results: Path) -> list[str]:
    return ["--suite", "smoke", "--datasets", "two_circles", "--algorithms", "meta_semi", "--seeds", "3",
            "--steps", "300", "--results-dir", str(results), "--num-cpus", "1"]


def _fail_mid_suite_then_rerun(results: Path, break_it, repair, cause: str, capfd) -> str:
    from bench.run import main

    first: dict = {}

    def act():
        first.update(_snapshot(results))
        break_it()

    watcher = _when_first_run_lands(results, act)
    code = main(_suite(results))
    watcher.join(timeout=5)
    out, err = capfd.readouterr()
    assert code == 1
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    assert "test error" in out and "runs in the table" in out  # the summary of what did finish
    last = err.strip().splitlines()[-1]
    assert last.startswith("bench.run: error: ") and cause in last, err[-3000:]
    assert str(results) in last and "run the same command again" in last
    assert first and all(p.read_bytes() == b for p, b in first.items())  # nothing written is damaged
    repair()
    assert main(_suite(results)) == 0
    out2 = capfd.readouterr().out
    done_before = len(first) // 2
    assert f"{done_before} already finished, {3 - done_before} to run" in out2
    runs = ResultStore(results).load_runs()
    assert len(runs) == 3 and set(runs["status"]) == {"ok"}
    assert all(p.read_bytes() == b for p, b in first.items())
    return last


@pytest.mark.ray
def test_disk_full_mid_suite_ends_with_one_line_and_a_rerun_completes(tmp_path, capfd):
    results = tmp_path / "disk"
    filler = results / "filler"

    def fill():
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass

    with _tmpfs(results, "48m"):
        line = _fail_mid_suite_then_rerun(results, fill, lambda: filler.unlink(), "No space left on device", capfd)
        print("disk-full line:", line)


@pytest.mark.ray
def test_runs_folder_read_only_mid_suite_ends_with_one_line_and_a_rerun_completes(tmp_path, capfd):
    results = tmp_path / "res"
    runs = results / "runs"
    stack = contextlib.ExitStack()
    root = os.geteuid() == 0

    def freeze():
        if root:  # chmod does not stop root: remount the folder read-only
            stack.enter_context(mounted(runs, "--bind", str(runs)))
            subprocess.run(["mount", "-o", "remount,bind,ro", str(runs)], check=True)
        else:
            os.chmod(runs, 0o555)

    def thaw():
        if root:
            stack.close()
        else:
            os.chmod(runs, 0o755)

    try:
        _fail_mid_suite_then_rerun(results, freeze, thaw, "Read-only file system" if root else "Permission denied",
                                   capfd)
    finally:
        stack.close()
