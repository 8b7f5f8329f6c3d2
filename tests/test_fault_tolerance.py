"""Kill tests through Ray: a SIGKILLed Ray Train worker, a SIGKILLed driver, a failing run.

- A Ray Train worker killed mid-run: Ray restarts the worker group, the run resumes from its
  checkpoint and ends with the numbers of an uninterrupted run.
- The driver killed mid-suite, then the same command again: the runs that were in flight
  resume (``resumed_from_step > 0``) and end with the numbers an uninterrupted run gives;
  finished runs are untouched; no run is lost or recorded twice.
- A run whose rows were deleted is rewritten from its final checkpoint or retrained, never
  recorded with zero steps.
- A failed run makes ``bench.run`` exit 1 and list it.

Only processes these tests started are signalled (by pid, from this process's tree).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bench.checkpoint import RunCheckpoints
from bench.ray_node import descendants, end_processes
from results import ResultStore

pytestmark = [pytest.mark.ray, pytest.mark.cluster]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _manifest_step(results, run_id: str) -> int:
    m = RunCheckpoints(str(results), run_id).manifest() or {}
    return int(m.get("step", 0))


def _eval_numbers(results, run_id: str) -> list:
    ev = ResultStore(results).load_evals([run_id]).sort_values(["step", "split", "model"])
    return [tuple(r) for r in ev[["step", "split", "model", "error", "loss"]].itertuples(index=False)]


def _plan(args: list[str]):
    from bench.run import build_parser, plan

    configs, _ = plan(build_parser().parse_args(args))
    return configs


def _train_alone(cfg, results) -> list:
    """The same run, uninterrupted, without Ray: the reference numbers."""
    from bench.config import RunEnv
    from bench.engine import train_run

    train_run(cfg, RunEnv(str(results)))
    return _eval_numbers(results, cfg.run_id)


def test_sigkill_of_a_ray_train_worker_resumes_from_the_checkpoint_with_equal_numbers(tmp_path, capfd):
    from bench.run import main

    res = tmp_path / "res"
    args = ["--suite", "smoke", "--datasets", "digits", "--algorithms", "supervised", "--steps", "240", "--workers",
            "2", "--num-cpus", "2", "--checkpoint-every-min", "0.003", "--results-dir", str(res)]
    (cfg,) = _plan(args)
    killed: dict = {}

    def kill_a_worker() -> None:
        deadline = time.time() + 400
        while time.time() < deadline:
            step = _manifest_step(res, cfg.run_id)
            workers = [p for p in descendants() if "RayTrainWorker" in _cmdline(p)]
            if step >= 60 and workers:
                killed.update(pid=workers[-1], step=step)
                os.kill(workers[-1], signal.SIGKILL)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_a_worker, daemon=True)
    watcher.start()
    code = main(args)
    watcher.join(timeout=5)
    out, err = capfd.readouterr()
    print(out[-3000:])
    assert killed, "no Ray Train worker was killed"
    assert code == 0, err[-3000:]
    assert "trial lost" not in out  # the worker group was restarted by Ray Train, inside the trial
    row = ResultStore(res).load_runs().iloc[0]
    print(f"killed worker pid {killed['pid']} after the checkpoint at step {killed['step']}; the run: status "
          f"{row['status']}, steps_done {row['steps_done']}, resumed_from_step {row['resumed_from_step']}, attempts "
          f"{row['attempts']}, wall_time_s {row['wall_time_s']:.1f} (last attempt {row['last_attempt_wall_time_s']:.1f})")
    assert row["status"] == "ok" and row["steps_done"] == 240
    assert row["attempts"] >= 2 and row["resumed_from_step"] >= killed["step"] > 0
    assert row["wall_time_s"] > row["last_attempt_wall_time_s"]
    assert row["worker_param_divergence"] == 0.0

    # An uninterrupted 2-worker run of the same config gives the same numbers.
    from bench.run import main as run_again

    ref = tmp_path / "ref"
    assert run_again([a if a != str(res) else str(ref) for a in args]) == 0
    resumed_evals, ref_evals = _eval_numbers(res, cfg.run_id), _eval_numbers(ref, cfg.run_id)
    ref_row = ResultStore(ref).load_runs().iloc[0]
    print(f"resumed run: test_error {row['test_error']!r}, val_error {row['val_error']!r}, {len(resumed_evals)} eval "
          f"rows; uninterrupted run: test_error {ref_row['test_error']!r}, val_error {ref_row['val_error']!r}, "
          f"{len(ref_evals)} eval rows; equal: {resumed_evals == ref_evals}")
    assert resumed_evals == ref_evals
    assert ref_row["test_error"] == row["test_error"]


def _cmd(results) -> list[str]:
    return [sys.executable, "-m", "bench.run", "--suite", "smoke", "--datasets", "digits", "--algorithms",
            "supervised,pseudo_label", "--seeds", "2", "--steps", "600", "--num-cpus", "2",
            "--checkpoint-every-min", "0", "--results-dir", str(results)]


def test_sigkill_of_the_driver_then_the_same_command_resumes_in_flight_runs(tmp_path):
    res = tmp_path / "res"
    configs = _plan(_cmd(res)[3:])
    ids = [c.run_id for c in configs]
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(_cmd(res), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 400
        in_flight: dict = {}
        while time.time() < deadline and proc.poll() is None:
            done = set(ResultStore(res).finished_run_ids()) if (res / "runs").is_dir() else set()
            in_flight = {r: _manifest_step(res, r) for r in ids if r not in done}
            if done and any(s >= 100 for s in in_flight.values()):
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stdout.read()
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    first_out = proc.stdout.read()
    end_processes(tree, grace_s=20.0)  # what Ray would end by itself; only this driver's processes
    done_before = set(ResultStore(res).finished_run_ids())
    before = {r: (res / "runs" / f"{r}.parquet").read_bytes() for r in done_before}
    steps_at_kill = {r: _manifest_step(res, r) for r in ids if r not in done_before}
    print(first_out[-2000:])
    print(f"driver SIGKILLed: {len(done_before)} runs finished, checkpoints of the others at steps {steps_at_kill}")
    assert done_before and any(s > 0 for s in steps_at_kill.values())

    second = subprocess.run(_cmd(res), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    print(second.stdout[-3000:])
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"{len(done_before)} already finished, {len(ids) - len(done_before)} to run" in second.stdout
    runs = ResultStore(res).load_runs()
    assert sorted(runs["run_id"]) == sorted(ids)  # none lost, none twice
    assert sorted(os.listdir(res / "runs")) == sorted(f"{r}.parquet" for r in ids)
    assert set(runs["status"]) == {"ok"} and set(runs["steps_done"]) == {600}
    for r, b in before.items():
        assert (res / "runs" / f"{r}.parquet").read_bytes() == b  # finished runs untouched
    resumed = runs.set_index("run_id").loc[[r for r, s in steps_at_kill.items() if s > 0]]
    print(f"after the re-run: {len(runs)} rows in runs/ for {len(ids)} run ids, {len(set(runs['run_id']))} distinct")
    print(resumed[["resumed_from_step", "attempts", "steps_done", "wall_time_s", "last_attempt_wall_time_s"]]
          .to_string())
    assert (resumed["resumed_from_step"] >= 1).all() and (resumed["attempts"] >= 2).all()
    assert "resumed from step" in second.stdout
    # The resumed runs end with the numbers of an uninterrupted run (same config, no Ray).
    for cfg in configs:
        if cfg.run_id in resumed.index:
            got, want = _eval_numbers(res, cfg.run_id), _train_alone(cfg, tmp_path / "ref")
            print(f"{cfg.run_id} ({cfg.algorithm} seed={cfg.seed}): {len(got)} eval rows after the resume, equal "
                  f"to an uninterrupted run's: {got == want}")
            assert got == want, cfg.run_id
    assert not (res / "checkpoints").exists()  # spent once the rows are written


def test_deleted_rows_of_a_two_worker_run_never_give_a_zero_step_result(tmp_path, capfd):
    from bench.run import main

    res = tmp_path / "res"
    args = ["--suite", "smoke", "--datasets", "digits", "--algorithms", "supervised", "--steps", "60", "--workers",
            "2", "--num-cpus", "2", "--results-dir", str(res)]
    (cfg,) = _plan(args)
    assert main(args + ["--keep-checkpoints"]) == 0
    first = ResultStore(res).load_runs().iloc[0]

    def delete_rows():
        for sub in ("runs", "evals"):
            os.remove(res / sub / f"{cfg.run_id}.parquet")

    delete_rows()  # the checkpoint says the run finished: its rows are rewritten from it
    assert main(args) == 0
    out = capfd.readouterr().out
    row = ResultStore(res).load_runs().iloc[0]
    assert "rows rewritten from its final checkpoint" in out
    assert row["steps_done"] == 60 and row["resumed_from_step"] == 60 and row["test_error"] == first["test_error"]
    assert row["wall_time_s"] >= first["wall_time_s"] and not (res / "checkpoints").exists()

    delete_rows()  # no checkpoint left: the run trains again, from step 0
    assert main(args) == 0
    row = ResultStore(res).load_runs().iloc[0]
    assert row["steps_done"] == 60 and row["resumed_from_step"] == 0 and row["attempts"] == 1
    assert row["test_error"] == first["test_error"]


def test_a_failed_run_makes_the_command_exit_1_and_lists_it(tmp_path, capfd):
    import torch

    from bench.checkpoint import code_version
    from bench.run import main

    res = tmp_path / "res"
    args = ["--suite", "smoke", "--datasets", "two_circles", "--algorithms", "supervised,pseudo_label",
            "--num-cpus", "2", "--results-dir", str(res)]
    by_algo = {c.algorithm: c for c in _plan(args)}
    bad, good = by_algo["pseudo_label"], by_algo["supervised"]
    ck = RunCheckpoints(str(res), bad.run_id)
    os.makedirs(res / "checkpoints" / bad.run_id)
    torch.save({"not": "a run state"}, res / "checkpoints" / bad.run_id / ck.file_name(5, 0))
    ck.write_manifest({"run_id": bad.run_id, "code_version": code_version(), "world_size": 1, "step": 5,
                       "steps": bad.steps, "files": [ck.file_name(5, 0)], "attempts": 1, "wall_time_s": 1.0})
    assert main(args) == 1
    out, err = capfd.readouterr()
    assert f"failed {bad.run_id} two_circles/" in err and "1 runs failed, 0 missing" in err, err
    assert good.run_id not in err
    runs = ResultStore(res).load_runs().set_index("run_id")
    assert runs.loc[bad.run_id, "status"] == "failed" and runs.loc[good.run_id, "status"] == "ok"
