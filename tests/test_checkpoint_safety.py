"""Checkpoints hold tensors and plain containers only, load with weights_only=True, and a
planted pickle (in a checkpoint file or in a run's checkpoint in the results store) is
refused with one line without running anything."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from algorithms import list_algorithms, list_rules
from bench.checkpoint import CheckpointError, check_plain, load_state, save_state
from bench.config import RunConfig, RunEnv
from bench.engine import train_run


class _Planted:
    """What an attacker would put in state.pt: unpickling it creates a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(directory, marker) -> None:
    os.makedirs(directory, exist_ok=True)
    torch.save({"step": 3, "model": _Planted(str(marker))}, os.path.join(directory, "state.pt"))


def test_planted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    _plant(tmp_path / "ckpt", marker)
    # The planted file really would run code under the unrestricted unpickler.
    with open(tmp_path / "ckpt" / "state.pt", "rb") as f:
        assert b"open" in f.read()
    with pytest.raises(CheckpointError) as ei:
        load_state(str(tmp_path / "ckpt"))
    msg = str(ei.value)
    assert "\n" not in msg and "refusing checkpoint" in msg and "state.pt" in msg
    assert not marker.exists()


def _cfg(**kw) -> RunConfig:
    return RunConfig.from_dict(dict(dict(dataset="two_circles", algorithm="supervised", network="mlp", n_labels=50,
                                         steps=10, eval_every=5, batch_labeled=16, batch_unlabeled=32), **kw))


def test_planted_pickle_in_the_store_fails_the_run_with_one_line(tmp_path):
    import json

    from bench.checkpoint import RunCheckpoints, code_version

    marker = tmp_path / "pwned"
    cfg = _cfg().resolved()
    ck = RunCheckpoints(str(tmp_path / "res"), cfg.run_id)
    _plant(tmp_path / "res" / "checkpoints" / cfg.run_id, marker)
    os.replace(tmp_path / "res" / "checkpoints" / cfg.run_id / "state.pt",
               tmp_path / "res" / "checkpoints" / cfg.run_id / ck.file_name(5, 0))
    ck.write_manifest({"run_id": cfg.run_id, "code_version": code_version(), "world_size": 1, "step": 5,
                       "steps": 10, "files": [ck.file_name(5, 0)], "attempts": 1, "wall_time_s": 1.0})
    out = train_run(cfg, RunEnv(str(tmp_path / "res")))
    assert out.status == "failed"
    msg = out.run_row["error_message"]
    assert msg.startswith("CheckpointError: refusing checkpoint ") and "\n" not in msg, msg
    assert "delete" in msg and cfg.run_id in msg  # says how to start the run afresh
    assert not marker.exists()
    assert json.loads((tmp_path / "res" / "checkpoints" / cfg.run_id / "manifest.json").read_text())["step"] == 5


def test_check_plain_refuses_objects():
    check_plain({"a": [torch.zeros(2), (1, 2.0, "x", None)], 3: {"b": True}})
    with pytest.raises(CheckpointError, match="generator"):
        check_plain({"generator": torch.Generator()})
    with pytest.raises(CheckpointError, match="not str or int"):
        check_plain({(1, 2): 0})


ALGOS = list_algorithms() + [f"pseudo_label+{r}" for r in list_rules()] + ["mean_teacher+l2i_o"]


@pytest.mark.parametrize("name", ALGOS)
def test_every_algorithm_checkpoints_as_tensors_and_plain_containers(name, tmp_path):
    from bench.checkpoint import RunCheckpoints

    cfg = RunConfig.from_dict(dict(dataset="two_circles", algorithm=name, network="mlp", n_labels=50, steps=4,
                                   eval_every=2, batch_labeled=16, batch_unlabeled=32,
                                   optim={"name": "adam", "lr": 0.01}))
    env = RunEnv(str(tmp_path / "res"), checkpoint_every_min=0, keep_checkpoints=True)
    out = train_run(cfg, env)
    assert out.status == "ok", out.run_row["error_message"]
    ck = RunCheckpoints(env.results_dir, cfg.resolved().run_id)
    assert ck.manifest()["step"] == 4
    names = os.listdir(tmp_path / "res" / "checkpoints" / cfg.resolved().run_id)
    assert sorted(names) == ["manifest.json", ck.file_name(4, 0)]  # the last step's state only
    with open(tmp_path / "res" / "checkpoints" / cfg.resolved().run_id / ck.file_name(4, 0), "rb") as f:
        state = torch.load(f, weights_only=True)  # the zip's pickle names only torch storages
    assert state.keys() == ck.load(4).keys()
    assert isinstance(state["generator"], torch.Tensor) and isinstance(state["torch_rng"], torch.Tensor)
    assert pickle.dumps(state["sample_l"]["pos"]) and isinstance(state["sample_l"]["pos"], int)
    assert state["step"] == 4 and len(state["eval_rows"]) == len(out.eval_rows)
