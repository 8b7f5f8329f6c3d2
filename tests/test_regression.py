"""Semi-supervised regression (facial landmarks, L2I 001 Sec. 5.2) against independent computations.

Oracles: 001 App. B.2's closed forms (Eq. 12, 13, 15) for a one-layer regression model, evaluated by hand
through the suite's rules (l2i_o exact and approx, l2i_l); the shift-corrected pseudo-labels of 001 App.
A.1 against a brute-force numpy shift (np.pad reflect) of each image and a per-image prediction; the
landmark metric against datasets.landmarks; and the run path end to end (task, metric column, summaries,
the one-line refusal of classification-only methods).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

import datasets
from algorithms import Batch, TrainContext, get_algorithm, list_algorithms, list_compositions
from algorithms.task import ClassificationTask, RegressionTask, standardisation
from bench.config import RunEnv
from bench.engine import train_run
from bench.evaluate import evaluate
from bench.run_task import nme_fraction, task_for
from bench.suites import SUITES, expand
from datasets.landmark_augment import equivariant_shift_for, landmark_max_shift
from datasets.landmarks import nme_per_sample

D, N_T, N_U, N_H = 4, 6, 4, 5


class OneLayer(nn.Module):
    """Phi_theta(x) = theta^T x (001 App. B.2), as a network whose last layer is ``classifier``."""

    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.classifier = nn.Linear(D, 1, bias=False).double()
        with torch.no_grad():
            self.classifier.weight.copy_(theta[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


def _one_layer(algorithm: str, hp: dict, seed: int = 0):
    """The composed regression algorithm on a one-layer model. Every augmentation of the unlabeled batch
    moves it by fresh noise eta_k (001 App. B: z = psi(x_u) = theta^T (x_u + eta)), recorded in
    ``o["views"]`` in the order drawn; labeled and hold-out batches are not moved; displacements are zero.
    Targets standardised by (m, s)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    theta, x_t, x_u, x_h = 0.5 * r(D), r(N_T, D), r(N_U, D), r(N_H, D)
    y_t, y_h = r(N_T, 1) + 2.0, r(N_H, 1) + 2.0
    m, s = torch.tensor([2.0], dtype=torch.float64), torch.tensor([1.5], dtype=torch.float64)
    views: list[torch.Tensor] = []

    def augment(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        del gen
        if x.shape[0] == N_U:
            views.append(x + 0.3 * r(N_U, D))
            x = views[-1]
        return x, torch.zeros(x.shape[0], 1, dtype=x.dtype)

    task = RegressionTask(m, s, augment, lambda pred, y: (pred - y).abs().mean(1))
    cls = get_algorithm(algorithm)
    fields = {f.name for f in dataclasses.fields(cls.Hparams)}
    base = {"rampup": "none", "l2i_inner_labeled": True, "l2i_inner_lambda": False, "l2i_meta_path": "z"}
    algo = cls(OneLayer(theta), cls.Hparams(**{k: v for k, v in {**base, **hp}.items() if k in fields}),
               TrainContext(1, 100, task=task))
    batch = Batch(x_t, y_t, x_u, None, x_h, y_h)
    std = lambda y: (y - m) / s  # noqa: E731
    return algo, batch, dict(theta=theta, x_t=x_t, x_u=x_u, x_h=x_h, views=views, y_t=std(y_t[:, 0]),
                             y_h=std(y_h[:, 0]))


def _eq12_15(o: dict, eta: float, x_student: torch.Tensor, x_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """001 App. B.2 with the suite's means instead of sums (each sum over a set divided by its size), the
    student's unlabeled input ``x_student`` (App. B: the original image x_u) and z = theta^T ``x_z``:
    Eq. 12 theta* = theta - 2 eta [mean_T (theta^T x - y) x + mean_U (theta^T x_s - z) x_s],
    Eq. 15 dC_H/dz_j = 4 eta / (|H| |U|) sum_H (theta*^T x - y) x^T x_s,j,
    Eq. 13 dC_H/dtheta through z = sum_j dC_H/dz_j x_z,j."""
    theta, x_t, x_h = o["theta"], o["x_t"], o["x_h"]
    z = x_z @ theta
    theta_star = theta - 2 * eta * ((x_t @ theta - o["y_t"]) @ x_t / N_T + (x_student @ theta - z) @ x_student / N_U)
    eq15 = 4 * eta / (N_H * N_U) * ((x_h @ theta_star - o["y_h"]) @ x_h) @ x_student.T
    eq13 = (eq15[:, None] * x_z).sum(0)
    return eq15, eq13


def _meta_inputs(algo, batch: Batch, o: dict, inner_loss: str):
    """(StepInputs, the rule's MetaViews, the student's and the imputer's unlabeled inputs of the closed form).
    ``base``: Pseudo-Label's student sees the original image and imputes from view 0, Mean Teacher's student
    sees view 0 and its teacher view 1 (App. B's setting); ``mse_views`` (App. A.2): two fresh views drawn
    for the meta step, the student on the first, z from the second."""
    s = algo.prepare(batch, 0)
    drawn = len(o["views"])
    views = algo.rule.core.meta_views(s, batch)
    if inner_loss == "mse_views":
        assert len(o["views"]) == drawn + 2
        return s, views, o["views"][-2], o["views"][-1]
    return s, views, s.x_u_student, s.imputer_view


@pytest.mark.parametrize("inner_loss", ["mse_views", "base"])
@pytest.mark.parametrize("base", ["pseudo_label", "mean_teacher"])
@pytest.mark.parametrize("method", ["exact", "approx"])
def test_l2i_o_regression_is_001_appendix_b2_eq13(base, method, inner_loss):
    algo, batch, o = _one_layer(f"{base}+l2i_o", {"meta_method": method, "ema_decay": 0.5, "l2i_inner_loss": inner_loss})
    s, views, x_student, x_z = _meta_inputs(algo, batch, o, inner_loss)
    if inner_loss == "base" and base == "pseudo_label":
        torch.testing.assert_close(x_student, o["x_u"])  # App. A.1: the student on the original image
    assert not torch.equal(x_student, x_z)
    eta = 0.3
    x_h, y_h = algo.labeled_views(batch.x_h, batch.y_h)
    grads, _ = algo.rule.meta_gradients(s, views, x_h, y_h, eta)
    _, eq13 = _eq12_15(o, eta, x_student, x_z)
    assert float(eq13.abs().max()) > 1e-6  # not a vacuous zero
    # a one-layer model is its own last layer: Eq. 6's approximation is exact here
    torch.testing.assert_close(grads["classifier.weight"][0], eq13, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("inner_loss", ["mse_views", "base"])
def test_l2i_l_regression_is_001_appendix_b2_eq15_and_eq14(inner_loss):
    algo, batch, o = _one_layer("pseudo_label+l2i_l", {"l2i_label_lr": 0.7, "l2i_inner_loss": inner_loss})
    s, views, x_student, x_z = _meta_inputs(algo, batch, o, inner_loss)
    eta = 0.2
    z0 = algo.rule.initial_labels(s, views)
    torch.testing.assert_close(z0[:, 0], x_z @ o["theta"], rtol=1e-12, atol=1e-12)
    g, _ = algo.rule.label_gradient(s, views, z0, batch.x_h, batch.y_h, eta)
    eq15, _ = _eq12_15(o, eta, x_student, x_z)
    torch.testing.assert_close(g[:, 0], eq15, rtol=1e-10, atol=1e-12)
    # Eq. 14: z* = z - eta_z dC_H/dz on the per-sample meta-gradient (B_u x the mean's), no projection
    _, z1, _, _ = algo.rule.corrected_labels(s, views, batch.x_h, batch.y_h, eta)
    torch.testing.assert_close(z1[:, 0], z0[:, 0] - 0.7 * N_U * eq15, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_l2i_l_regression_first_order_is_eq15_at_theta(method):
    """At first order grad C_H is taken at theta instead of theta*: Eq. 15 with theta* replaced by theta."""
    algo, batch, o = _one_layer("pseudo_label+l2i_l", {"meta_method": method})
    s, views, x_student, _ = _meta_inputs(algo, batch, o, "mse_views")
    eta = 0.2
    g, _ = algo.rule.label_gradient(s, views, algo.rule.initial_labels(s, views), batch.x_h, batch.y_h, eta)
    theta, x_h = o["theta"], o["x_h"]
    ref = 4 * eta / (N_H * N_U) * ((x_h @ theta - o["y_h"]) @ x_h) @ x_student.T
    torch.testing.assert_close(g[:, 0], ref, rtol=1e-4 if method == "fd" else 1e-10, atol=1e-10)


# -- the shift-corrected pseudo-labels of 001 App. A.1, by brute force ---------------------------------
def _shift_np(img: np.ndarray, dx: int, dy: int, k: int) -> np.ndarray:
    """Content moved by (dx, dy) pixels, uncovered pixels reflected at the border: an independent
    implementation of the landmark shift (np.pad 'reflect' repeats no edge pixel)."""
    h, w = img.shape
    padded = np.pad(img, k, mode="reflect")
    return padded[k - dy: k - dy + h, k - dx: k - dx + w]


def _landmark_run(algorithm: str, hp: dict | None = None):
    data = datasets.load("synthetic_landmarks")
    x_l, y_l, x_u = data.x_train[:8], data.y_train[:8], data.x_train[100:106]
    task = task_for(data.info, data.y_train[:50])
    torch.manual_seed(0)
    from algorithms.networks import build_network

    model = build_network("tcdcn", data.info.input_shape, data.info.num_outputs)
    cls = get_algorithm(algorithm)
    algo = cls(model, cls.Hparams(**(hp or {})), TrainContext(10, 100, generator=torch.Generator().manual_seed(5),
                                                              task=task))
    return algo, Batch(x_l, y_l, x_u), task


def _draws(n_l: int, n_u: int, k: int, views: int, seed: int = 5) -> list[np.ndarray]:
    """The shifts the run's generator gives, in the base's order: labeled, then each unlabeled view (dx [B], dy [B])."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in (n_l, *([n_u] * views)):
        dx = torch.randint(-k, k + 1, (n,), generator=g)
        dy = torch.randint(-k, k + 1, (n,), generator=g)
        out.append(torch.stack([dx, dy], 1).numpy())
    return out


@torch.no_grad()
def test_pseudo_label_regression_target_is_the_shifted_prediction_minus_the_shift():
    algo, batch, task = _landmark_run("pseudo_label")
    s = algo.prepare(batch, 0)
    k = landmark_max_shift("synthetic_landmarks")
    shifts_l, shifts_u = _draws(8, 6, k, views=1)  # the student sees the original image: one unlabeled view
    assert (np.abs(shifts_u) > 0).any()
    torch.testing.assert_close(s.x_u_student, batch.x_u)
    for j in range(6):
        dx, dy = map(int, shifts_u[j])
        view = torch.from_numpy(_shift_np(batch.x_u[j, 0].numpy(), dx, dy, k).copy())[None, None]
        pixels = task.decode(algo.model(view))[0].view(5, 2) - torch.tensor([dx, dy], dtype=torch.float32)
        torch.testing.assert_close(s.targets[j], task.encode(pixels.reshape(1, 10))[0], rtol=1e-5, atol=1e-5)
    # the labeled view and its targets moved alike
    for i in range(8):
        dx, dy = map(int, shifts_l[i])
        ref = _shift_np(batch.x_l[i, 0].numpy(), dx, dy, k)
        np.testing.assert_allclose(s.x_l[i, 0].numpy(), ref, rtol=0, atol=0)
        np.testing.assert_allclose(s.y_l[i].view(5, 2).numpy(), batch.y_l[i].view(5, 2).numpy() + [dx, dy], atol=1e-5)
    assert torch.equal(s.mask, torch.ones(6))


@torch.no_grad()
def test_mean_teacher_regression_target_moves_from_the_teachers_view_to_the_students():
    algo, batch, task = _landmark_run("mean_teacher")
    with torch.no_grad():  # a teacher that differs from the student
        for p in algo.teacher.model.parameters():
            p.mul_(0.9)
    s = algo.prepare(batch, 0)
    k = landmark_max_shift("synthetic_landmarks")
    _, student, teacher = _draws(8, 6, k, views=2)
    for j in range(6):
        (dx1, dy1), (dx2, dy2) = map(int, student[j]), map(int, teacher[j])
        np.testing.assert_allclose(s.x_u_student[j, 0].numpy(), _shift_np(batch.x_u[j, 0].numpy(), dx1, dy1, k))
        view = torch.from_numpy(_shift_np(batch.x_u[j, 0].numpy(), dx2, dy2, k).copy())[None, None]
        pixels = task.decode(algo.teacher.model(view))[0].view(5, 2) + torch.tensor([dx1 - dx2, dy1 - dy2],
                                                                                    dtype=torch.float32)
        torch.testing.assert_close(s.targets[j], task.encode(pixels.reshape(1, 10))[0], rtol=1e-5, atol=1e-5)


def test_equivariant_shift_moves_targets_as_the_landmark_shift():
    data = datasets.load("synthetic_landmarks")
    aug = equivariant_shift_for("synthetic_landmarks")
    x, delta = aug(data.x_train[:5], torch.Generator().manual_seed(3))
    (shifts,) = _draws(5, 0, landmark_max_shift("synthetic_landmarks"), views=0, seed=3)
    np.testing.assert_array_equal(delta.view(5, 5, 2).numpy(), np.repeat(shifts[:, None, :], 5, axis=1))


# -- the task: standardisation, metric, losses ----------------------------------------------------------
def test_standardisation_and_regression_task_losses():
    y = torch.tensor([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])
    mean, std = standardisation(y)
    torch.testing.assert_close(mean, torch.tensor([3.0, 10.0]))
    torch.testing.assert_close(std, torch.tensor([2.0, 1.0]))  # a constant coordinate gets std 1
    torch.testing.assert_close(standardisation(y[:1])[1], torch.ones(2))
    t = RegressionTask(mean, std, lambda x, g: (x, torch.zeros(x.shape[0], 2)), nme_fraction)
    out = torch.tensor([[0.5, -1.0]])
    torch.testing.assert_close(t.losses(out, torch.tensor([[3.0, 10.0]])), torch.tensor([(0.25 + 1.0) / 2]))
    torch.testing.assert_close(t.decode(t.encode(y)), y)
    torch.testing.assert_close(t.view_offset(torch.tensor([[2.0, 1.0]]), torch.tensor([[-2.0, 3.0]])),
                               torch.tensor([[-2.0, 2.0]]))


def test_evaluation_metric_is_the_papers_nme_over_the_interocular_distance():
    data = datasets.load("synthetic_landmarks")
    task = task_for(data.info, data.y_train[:100])
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 10))
    x, y = data.x_test[:300], data.y_test[:300]
    metric, loss = evaluate(model, x, y, __import__("algorithms").Comm(), task, batch_size=64)
    with torch.no_grad():
        pred = task.decode(model(x))
        assert metric == pytest.approx(float(nme_per_sample(pred, y).mean()) / 100, rel=1e-6)
        assert loss == pytest.approx(float(((model(x) - (y - task.mean) / task.std) ** 2).mean()), rel=1e-5)
    cls_metric, _ = evaluate(nn.Linear(2, 3), torch.randn(50, 2), torch.randint(0, 3, (50,)),
                             __import__("algorithms").Comm(), ClassificationTask())
    assert 0.0 <= cls_metric <= 1.0


# -- which methods run on regression, and the one-line refusals -----------------------------------------
def test_classification_only_methods_refuse_regression_in_one_line():
    runs = {n for n in list_algorithms() + list_compositions() if get_algorithm(n).refuse_task("regression") is None}
    assert {"supervised", "pseudo_label", "mean_teacher", "pseudo_label+l2i_o", "pseudo_label+l2i_l",
            "mean_teacher+l2i_o", "mean_teacher+l2i_l", "pseudo_label+l2rw", "mean_teacher+l2rw"} == runs
    for name in ("pseudo_label+meta_semi", "mean_teacher+meta_grad", "meta_semi", "fixmatch", "mixmatch+l2i_o"):
        why = get_algorithm(name).refuse_task("regression")
        assert why and "\n" not in why and "regression" in why, name
    assert "simplex" in get_algorithm("pseudo_label+meta_grad").refuse_task("regression")


@pytest.mark.parametrize("algorithm", ["pseudo_label+meta_semi", "mean_teacher+meta_grad", "meta_semi"])
def test_cli_refuses_classification_only_rules_before_anything_runs(algorithm, tmp_path, capsys, monkeypatch):
    import ray

    from bench.run import main

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    out = tmp_path / "r"
    with pytest.raises(SystemExit) as e:
        main(["--datasets", "synthetic_landmarks", "--algorithms", algorithm, "--results-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "regression" in err[0] and algorithm.split("+")[-1] in err[0]
    assert not out.exists()


def test_suite_on_a_landmark_set_runs_the_regression_methods_only():
    cfgs = expand(SUITES["quick"], datasets=["synthetic_landmarks"], seeds=1)
    algos = {c.algorithm for c in cfgs}
    assert {"supervised", "pseudo_label", "mean_teacher", "pseudo_label+l2i_o", "pseudo_label+l2i_l",
            "pseudo_label+l2rw"} == algos
    assert {c.network for c in cfgs} == {"tcdcn"} and {c.n_labels for c in cfgs} == {100, 500}


def test_unknown_dataset_is_still_a_one_line_error(tmp_path, capsys):
    from bench.run import main

    with pytest.raises(SystemExit) as e:
        main(["--datasets", "landmarks_x", "--results-dir", str(tmp_path / "r"), "--dry-run"])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


# -- end to end: a regression run, its rows, its summary -------------------------------------------------
@pytest.fixture(scope="module")
def landmark_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("landmarks")
    load = datasets.load

    def small_test_set(name, *args, **kwargs):  # evaluation on 3,000 test images dominates a 6-step run
        data = load(name, *args, **kwargs)
        return dataclasses.replace(data, x_test=data.x_test[:200], y_test=data.y_test[:200])

    mp = pytest.MonkeyPatch()
    mp.setattr(datasets, "load", small_test_set)
    outcomes = {}
    for algo in ("supervised", "pseudo_label", "mean_teacher+l2i_o", "pseudo_label+l2i_l", "pseudo_label+l2rw"):
        (cfg,) = expand(SUITES["quick"], algorithms=[algo], datasets=["synthetic_landmarks"], labels=[100], seeds=1,
                        steps=6)
        cfg = dataclasses.replace(cfg, eval_every=3, batch_labeled=8, batch_unlabeled=8,
                                  hparams={**cfg.hparams, **({"holdout_batch": 8} if "l2i" in algo else {})})
        outcomes[algo] = train_run(cfg, RunEnv(results_dir=str(root)))
    mp.undo()
    return root, outcomes


def test_regression_runs_record_their_metric_and_the_figure_diagnostics(landmark_runs):
    from results import ResultStore

    root, outcomes = landmark_runs
    for algo, out in outcomes.items():
        assert out.status == "ok", (algo, out.run_row["error_message"])
        assert out.run_row["metric"] == "nme_iod" and 0.0 < out.run_row["test_error"]
        assert {r["metric"] for r in out.eval_rows} == {"nme_iod"}
        assert {(r["split"], r["model"]) for r in out.eval_rows} == {(s, m) for s in ("val", "test", "train") for m in ("ema", "raw")}
    # 001 Fig. 2: hold-out loss before / after the label update and the test loss, per evaluation
    l2i = [r for r in outcomes["pseudo_label+l2i_l"].eval_rows if r["split"] == "test" and r["model"] == "raw"]
    assert len(l2i) == 2 and all(np.isfinite([r["loss"], r["diag_holdout_loss_before"], r["diag_holdout_loss_after"]])
                                 .all() for r in l2i)
    runs, evals = ResultStore(root).load_runs(), ResultStore(root).load_evals()
    assert set(runs["metric"]) == {"nme_iod"} and set(evals["metric"]) == {"nme_iod"}
    cfg = json.loads(runs.iloc[0]["config_json"])
    assert cfg["dataset"] == "synthetic_landmarks"


def test_summaries_never_mix_metrics(landmark_runs):
    import pandas as pd

    from results import ResultStore, format_table, summarize

    root, _ = landmark_runs
    runs = ResultStore(root).load_runs()
    cls = runs.iloc[:2].copy()
    cls["metric"], cls["dataset"], cls["test_error"] = None, "digits", 0.25  # a classification run of an older writer
    s = summarize(pd.concat([runs, cls], ignore_index=True))
    assert set(zip(s["metric"], s["dataset"])) == {("nme_iod", "synthetic_landmarks"), ("error", "digits")}
    text = format_table(s)
    blocks = text.split("\n\n")
    assert len(blocks) == 2 and "test error %" in blocks[0] and "test NME/IOD %" in blocks[1]
    assert "digits" in blocks[0] and "digits" not in blocks[1] and "synthetic_landmarks" in blocks[1]


def test_schema_bounds_follow_the_metric():
    from results.schema import evals_table

    row = {"run_id": "r1", "step": 1, "split": "test", "model": "ema", "error": 1.7, "loss": 0.3}
    assert evals_table([{**row, "metric": "nme_iod"}], "r1").column("error")[0].as_py() == 1.7
    with pytest.raises(ValueError, match="fraction"):
        evals_table([row], "r1")  # without a metric: a classification error, in [0, 1]
    with pytest.raises(ValueError, match=">= 0"):
        evals_table([{**row, "metric": "nme_iod", "error": -0.1}], "r1")
    with pytest.raises(ValueError, match="metric must be one of"):
        evals_table([{**row, "metric": "mse"}], "r1")


def test_every_dataset_metric_is_a_results_metric():
    from results.schema import METRICS

    assert {datasets.get_info(n).metric for n in datasets.list_datasets()} <= set(METRICS)


def test_progress_lines_name_the_metric():
    from bench.grid_progress import metric_label

    assert [metric_label(d) for d in ("digits", "synthetic_landmarks", "aflw", "nope")] == ["err", "NME/IOD", "NME/IOD",
                                                                                          "err"]


def test_a_fixed_test_subset_of_regression_targets_is_uniform_and_fixed():
    from bench.sampling import balanced_subset

    y = np.random.default_rng(1).normal(size=(50, 10)).astype(np.float32)  # [N, K]: no classes
    idx = balanced_subset(y, 20, seed=0)
    assert idx.shape == (20,) and len(set(idx.tolist())) == 20 and (np.diff(idx) > 0).all() and idx.max() < 50
    np.testing.assert_array_equal(idx, balanced_subset(y, 20, seed=0))
    np.testing.assert_array_equal(balanced_subset(y, 80), np.arange(50))
