"""Checkpoints hold tensors and plain containers only, load with weights_only=True, and a
planted pickle is refused with one line without running anything."""
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


def test_planted_pickle_in_a_ray_checkpoint_fails_the_run_with_one_line(tmp_path):
    from ray.train import Checkpoint

    from bench.ray_launch import load_checkpoint

    marker = tmp_path / "pwned"
    _plant(tmp_path / "ckpt", marker)

    class PlantedReporter:
        def report(self, metrics, state):
            del metrics, state

        def restore(self):
            return load_checkpoint(Checkpoint.from_directory(str(tmp_path / "ckpt")))

    cfg = RunConfig.from_dict(dict(dataset="two_circles", algorithm="supervised", network="mlp", n_labels=50, steps=10,
                                   eval_every=5, batch_labeled=16, batch_unlabeled=32))
    out = train_run(cfg, RunEnv(str(tmp_path / "res")), reporter=PlantedReporter())
    assert out.status == "failed"
    assert out.run_row["error_message"].startswith("CheckpointError: refusing checkpoint ")
    assert "\n" not in out.run_row["error_message"]
    assert not marker.exists()


def test_check_plain_refuses_objects():
    check_plain({"a": [torch.zeros(2), (1, 2.0, "x", None)], 3: {"b": True}})
    with pytest.raises(CheckpointError, match="generator"):
        check_plain({"generator": torch.Generator()})
    with pytest.raises(CheckpointError, match="not str or int"):
        check_plain({(1, 2): 0})


class _Capture:
    """Keeps every checkpoint as it would be written and read back by the real reporters."""

    def __init__(self, tmp):
        self.tmp, self.states = tmp, []

    def report(self, metrics, state):
        if state is not None:
            d = os.path.join(self.tmp, f"c{len(self.states)}")
            os.makedirs(d)
            save_state(state, d)
            self.states.append(load_state(d))

    def restore(self):
        return None


ALGOS = list_algorithms() + [f"pseudo_label+{r}" for r in list_rules()] + ["mean_teacher+l2i_o"]


@pytest.mark.parametrize("name", ALGOS)
def test_every_algorithm_checkpoints_as_tensors_and_plain_containers(name, tmp_path):
    cfg = RunConfig.from_dict(dict(dataset="two_circles", algorithm=name, network="mlp", n_labels=50, steps=4,
                                   eval_every=2, batch_labeled=16, batch_unlabeled=32,
                                   optim={"name": "adam", "lr": 0.01}))
    cap = _Capture(str(tmp_path))
    out = train_run(cfg, RunEnv(str(tmp_path / "res")), reporter=cap, write=False)
    assert out.status == "ok", out.run_row["error_message"]
    assert len(cap.states) == 2 and cap.states[-1]["step"] == 4
    with open(os.path.join(tmp_path, "c1", "state.pt"), "rb") as f:  # the zip's pickle names only torch storages
        torch.load(f, weights_only=True)
    assert isinstance(cap.states[0]["generator"], torch.Tensor) and isinstance(cap.states[0]["torch_rng"], torch.Tensor)
    assert pickle.dumps(cap.states[0]["sample_l"]["pos"]) and isinstance(cap.states[0]["sample_l"]["pos"], int)
