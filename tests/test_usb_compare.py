"""bench.usb_compare without USB: the one-line refusal, argument errors, and our side of the
comparison (replayed views consumed exactly, in the roles USB gives them)."""
from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch

from bench import usb_compare as U
from bench import usb_steps as S


def test_refuses_in_one_line_without_semilearn(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "semilearn" else real(name, *a))
    with pytest.raises(SystemExit) as exc:
        U.main([])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "semilearn is not importable" in err


@pytest.mark.parametrize("argv", [["--bases", "nope"], ["--rounds", "1"], ["--batch", "fixmatch=4+6"],
                                  ["--batch", "fixmatch"], ["--csv", "x.txt"], ["--threads", "0"]])
def test_bad_arguments_exit_2(monkeypatch, capsys, argv):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # pretend USB is there
    with pytest.raises(SystemExit) as exc:
        U.main(argv)
    assert exc.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("base", list(S.BASES))
def test_our_step_consumes_the_prepared_views(base):
    spec = dataclasses.replace(S.BASES[base], batch_labeled=2, batch_unlabeled=4)
    views = S.make_views(spec, 2, seed=0)
    assert views[0].x_ulb_w.shape == (4, 3, 32, 32) and not torch.equal(views[0].x_ulb_w, views[0].x_ulb_s)
    step = S.ours_step(base, spec, views, channels_last=True, augment=False, seed=0)
    for i in range(3):  # raises if a view is left over or missing, or has the wrong shape
        step(i)
    S.ours_step(base, spec, views, channels_last=False, augment=True, seed=0)(0)


def test_replay_roles_match_usb():
    v = S.Views(*(torch.full((1,), float(i)) for i in range(6)))
    assert S.replay_order("fixmatch", v) == ([v.x_lb, v.x_ulb_w], [v.x_ulb_s])
    weak, strong = S.replay_order("mean_teacher", v)
    assert weak == [v.x_lb, v.x_ulb_s, v.x_ulb_w] and strong == []  # student x_ulb_s, EMA teacher x_ulb_w
    r = S.Replay()
    r.load([torch.zeros(2)])
    with pytest.raises(RuntimeError):
        r.load([torch.zeros(2)])
    with pytest.raises(RuntimeError):
        r(torch.zeros(3), None)


def test_network_pass_runs_our_two_networks():
    images = torch.randn(2, 3, 32, 32)
    for inplace in (True, False):
        S.network_pass(images, "ours", channels_last=not inplace, inplace=inplace)(0)
