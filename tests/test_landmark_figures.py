"""001 Fig. 2 / Fig. 3 (landmarks): the ``landmarks`` artifact from real short runs (no number or
run id changes, the final model's predictions decoded to pixels, the same fixed test images for
every run), the case choice and the curves against independent computations, NothingToDraw."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import datasets
from bench.config import RunConfig, RunEnv
from bench.engine import build_run, train_run
from bench.figure_plan import plan_figure
from results.artifacts import LANDMARK_IMAGES, load_artifacts, path_of, stack
from results.figures import FIGURES, FigureData, NothingToDraw
from results.figures import f001_fig2, f001_fig3
from results.figures.draw import load_data
from tests.figure_fixtures import holdout_loss, write_synthetic

DRY = dict(results_dir="unused", data_root=None, download=False, workers=1, gpus_per_worker=0.0, dry_run=True)


def _cfg(**kw) -> RunConfig:
    base = dict(dataset="synthetic_landmarks", algorithm="supervised", network="tcdcn", n_labels=100, steps=3,
                eval_every=3, batch_labeled=8, batch_unlabeled=8, n_test=32, ema_decay=0.0,
                optim={"name": "sgd", "lr": 0.01, "momentum": 0.9, "schedule": "constant"})
    base.update(kw)
    return RunConfig.from_dict(base)


def _numbers(out) -> tuple:
    row = {k: v for k, v in out.run_row.items() if k in ("test_error", "val_error", "status", "steps_done")}
    return row, [(r["step"], r["split"], r["model"], r["error"], r["loss"]) for r in out.eval_rows]


@pytest.mark.slow
def test_the_landmarks_artifact_is_the_final_models_decoded_prediction_and_changes_nothing(tmp_path):
    plain = _cfg()
    asked = _cfg(artifacts=("landmarks",))
    assert asked.run_id == plain.run_id
    a = train_run(plain, RunEnv(str(tmp_path / "a")))
    b = train_run(asked, RunEnv(str(tmp_path / "b")))
    assert a.status == b.status == "ok" and _numbers(a) == _numbers(b)
    assert not (tmp_path / "a" / path_of(plain.run_id)).exists()
    rows = load_artifacts(str(tmp_path / "b"), [asked.run_id], "landmarks")[asked.run_id]
    data = datasets.load("synthetic_landmarks")
    # the fixed images: the first LANDMARK_IMAGES of the test set, whatever the run
    assert rows["index"].tolist() == list(range(LANDMARK_IMAGES)) and (rows["subset"] == "test").all()
    assert np.array_equal(stack(rows, "target"), data.y_test[:LANDMARK_IMAGES].numpy())
    assert np.array_equal(stack(rows, "x"), data.x_test[:LANDMARK_IMAGES].reshape(LANDMARK_IMAGES, -1).numpy())
    # ema_decay 0: the EMA model is the final weights; decode by hand with the labeled set's statistics
    run = build_run(asked, RunEnv(str(tmp_path / "c")))
    run.model.load_state_dict(b.model_state)
    run.model.eval()
    y_l = run.y_l.double()
    with torch.no_grad():
        want = run.model(data.x_test[:LANDMARK_IMAGES]).double() * y_l.std(0) + y_l.mean(0)
    assert np.allclose(stack(rows, "prediction"), want.numpy(), atol=1e-4)
    # another seed and method: the same images and ground truth, other predictions
    other = _cfg(algorithm="mean_teacher", seed=1, artifacts=("landmarks",))
    assert train_run(other, RunEnv(str(tmp_path / "b"))).status == "ok"
    rows2 = load_artifacts(str(tmp_path / "b"), [other.run_id], "landmarks")[other.run_id]
    assert rows2["index"].tolist() == rows["index"].tolist()
    assert np.array_equal(stack(rows2, "target"), stack(rows, "target"))
    assert np.array_equal(stack(rows2, "x"), stack(rows, "x"))
    assert not np.allclose(stack(rows2, "prediction"), stack(rows, "prediction"))


def test_the_landmarks_artifact_needs_a_regression_dataset():
    cfg = RunConfig.from_dict(dict(dataset="two_circles", algorithm="supervised", network="mlp", n_labels=50, steps=2,
                                   eval_every=1, artifacts=["landmarks"]))
    out = train_run(cfg, RunEnv("unused"), write=False)
    assert out.status == "failed" and "landmarks needs a regression dataset" in out.run_row["error_message"]


def test_cases_are_the_largest_gain_then_the_worst_of_the_rest():
    rng = np.random.default_rng(3)
    base, method = rng.uniform(1, 20, 30), rng.uniform(1, 20, 30)
    success, failure = f001_fig3.pick_cases(base, method, k=4)
    by_gain = sorted(range(30), key=lambda i: (-(base[i] - method[i]), i))
    assert success.tolist() == by_gain[:4]
    rest = [i for i in range(30) if i not in by_gain[:4]]
    assert failure.tolist() == sorted(rest, key=lambda i: (-method[i], i))[:4]
    s5, f5 = f001_fig3.pick_cases(base[:5], method[:5], k=4)  # fewer images than two rows: each shown once
    assert len(s5) == 4 and sorted(s5.tolist() + f5.tolist()) == list(range(5))


def test_per_image_nme_is_the_papers_metric():
    target = np.array([[10, 10, 30, 10, 20, 20, 12, 30, 28, 30]], dtype=np.float32)  # eyes 20 px apart
    pred = target.copy()
    pred[0, 4] += 3.0  # the nose 3 px off: mean over 5 landmarks 0.6 px, / 20 px = 3%
    assert f001_fig3.per_image_nme(pred, target) == pytest.approx([3.0])


def _synthetic(name: str, tmp_path) -> tuple[FigureData, list]:
    plan = plan_figure(FIGURES[name], "cpu", DRY)
    res = str(tmp_path / "res")
    write_synthetic(res, plan.configs)
    planned = [dict(c.to_dict(), run_id=c.run_id) for c in plan.configs]
    return load_data(res, "cpu", planned), plan.configs


def test_fig2_draws_the_seed_means_of_the_holdout_losses_and_test_losses(tmp_path):
    data, configs = _synthetic("001-fig2", tmp_path)
    drawing = f001_fig2.FIGURE.plot(data)
    top, bottom = drawing.fig.axes
    l2i = [c for c in configs if c.algorithm == f001_fig2.METHOD]
    before = [np.mean([holdout_loss(c, i) for c in l2i]) for i in range(12)]
    lines = {ln.get_label(): ln.get_ydata() for ln in top.get_lines()}
    assert np.allclose(lines["before the update"], before)
    assert np.allclose(lines["after the update"], np.array(before) - 0.05)
    assert len(bottom.get_lines()) == 2


def test_fig3_shows_the_cases_chosen_from_the_artifacts(tmp_path):
    data, configs = _synthetic("001-fig3", tmp_path)
    drawing = f001_fig3.FIGURE.plot(data)
    cases = drawing.tables["cases"]
    arts = data.artifacts("landmarks")
    runs = data.lowest_seed_runs(arts)
    nme = {a: f001_fig3.per_image_nme(stack(arts[r], "prediction"), stack(arts[r], "target")) for a, r in runs.items()}
    gain = nme[f001_fig3.BASE] - nme[f001_fig3.METHOD]
    assert cases[cases["case"] == "success"]["test_image"].tolist() == list(np.argsort(-gain, kind="stable")[:4])
    assert len(cases) == 8 and cases["test_image"].is_unique
    assert len(drawing.fig.axes) == 8


def test_nothing_to_draw_without_runs_or_artifacts(tmp_path):
    empty = load_data(str(tmp_path / "none"), "cpu", [])
    for fig in (f001_fig2.FIGURE, f001_fig3.FIGURE):
        with pytest.raises(NothingToDraw):
            fig.plot(empty)
    data, configs = _synthetic("001-fig3", tmp_path)
    only_mt = dataclasses.replace(data, planned=[p for p in data.planned if p["algorithm"] == f001_fig3.BASE])
    with pytest.raises(NothingToDraw, match="mean_teacher\\+l2i_o"):
        f001_fig3.FIGURE.plot(only_mt)
    no_diag = dataclasses.replace(data, evals=data.evals.drop(columns=[f001_fig2.BEFORE]))
    with pytest.raises(NothingToDraw, match="holdout_loss_before"):
        f001_fig2.FIGURE.plot(no_diag)


def test_the_studies_share_one_set_of_runs_with_the_artifact_on_seed_0():
    for scale in ("cpu", "paper"):
        p2, p3 = (plan_figure(FIGURES[n], scale, DRY) for n in ("001-fig2", "001-fig3"))
        assert [c.run_id for c in p2.configs] == [c.run_id for c in p3.configs]
        assert {(c.algorithm, c.n_labels) for c in p2.configs} == {
            (a, f001_fig2.CPU_LABELS if scale == "cpu" else f001_fig2.AFLW_LABELS)
            for a in (f001_fig2.BASE, f001_fig2.METHOD)}
        assert all(c.artifacts == (("landmarks",) if c.seed == 0 else ()) for c in p2.configs)
    assert pd.Series([c.dataset for c in p2.configs]).eq("aflw").all()
