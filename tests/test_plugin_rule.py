"""Adding a meta rule is one file: a throwaway rule written into a temporary package (named in
``META_SSL_BENCH_PLUGINS``) runs through ``bench.run``, ``bench.tune`` and ``bench.perf`` with
no other edit (its search space, #HPs, perf variants and order, quick-suite membership and
diagnostics all come from the class)."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A first-order rule in the template's shape: soft weights sigmoid(<grad G, grad L_j> / T) on
# the base's per-sample unlabeled losses (G: the base's labeled loss), from the shared primitives.
RULE = '''
from dataclasses import dataclass, field
from typing import Literal

import torch

from algorithms.base import LossTerms
from algorithms.hparams import method_field
from algorithms.meta import directional_derivatives, global_loss_gradient
from algorithms.meta.rule import LossRule, register_rule


@dataclass
class SoftSignHparams:
    meta_method: Literal["jvp", "fd"] = method_field("jvp", {"jvp": "first", "fd": "first"})
    soft_temperature: float = field(default=1.0, metadata={"range": (0.1, 10.0), "scale": "log"})


@register_rule
class SoftSign(LossRule[SoftSignHparams]):
    """Weights sigmoid(d_j / T), d_j = <grad G, grad L_j>, on the base's unlabeled losses."""

    name = "soft_sign"
    description = "throwaway test rule: soft sign-of-meta-gradient weights"
    paper_hps = 1
    diagnostics = ("mean_weight",)  # the scalars it reports beyond the base's: results columns diag_<name>

    def meta_step(self, s, batch, info):
        algo = self.algo
        v = global_loss_gradient(algo.model, lambda logits, _y: algo.labeled_losses(logits, s), s.x_l, s.y_l,
                                 "train", algo.ctx.comm)
        d = directional_derivatives(algo.model, lambda logits, z: algo.unlabeled_losses(logits, s, targets=z),
                                    s.x_u_student, s.targets, v, "train", self.hp.meta_method)
        return torch.sigmoid(d / self.hp.soft_temperature).detach()

    def loss_terms(self, s, w, info):
        labeled = self.algo.labeled_losses(s.logits_l, s).mean()
        unlabeled = (w * self.algo.unlabeled_losses(s.logits_u, s)).mean()
        return LossTerms(labeled, unlabeled, s.weight, {"mean_weight": self.algo.ctx.comm.all_reduce_mean(w.mean())})
'''


@pytest.fixture
def plugin_env(tmp_path):
    pkg = tmp_path / "plugins" / "throwaway_rules"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "soft_sign.py").write_text(textwrap.dedent(RULE))
    path = os.pathsep.join([REPO, str(tmp_path / "plugins"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, META_SSL_BENCH_PLUGINS="throwaway_rules")


def _run(args, env, timeout=400):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_throwaway_rule_is_known_everywhere_without_ray(plugin_env):
    listing = _run(["bench.tune", "--algorithm", "pseudo_label+soft_sign", "--show-space"], plugin_env, 120)
    assert "soft_temperature: float in [0.1, 10] (log)" in listing
    assert "#HPs in the papers: 3" in listing  # pseudo_label's 2 + the rule's 1
    planned = _run(["bench.run", "--dry-run", "--results-dir", "unused-results"], plugin_env, 120)
    assert "pseudo_label+soft_sign" in planned  # the quick suite runs every registered rule on Pseudo-Label


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_throwaway_rule_runs_through_run_tune_and_perf(plugin_env, tmp_path):
    results = str(tmp_path / "results")
    common = ["--results-dir", results, "--num-cpus", "2"]
    out = _run(["bench.run", "--suite", "smoke", "--algorithms", "pseudo_label+soft_sign", "--datasets",
                "two_circles", *common], plugin_env)
    assert "pseudo_label+soft_sign" in out
    runs = [pq.read_table(f).to_pylist()[0] for f in glob.glob(os.path.join(results, "runs", "*.parquet"))]
    assert [(r["algorithm"], r["status"]) for r in runs] == [("pseudo_label+soft_sign", "ok")]
    evals = pq.read_table(os.path.join(results, "evals", f"{runs[0]['run_id']}.parquet")).to_pylist()
    assert all(0.0 < e["diag_mean_weight"] < 1.0 for e in evals)

    out = _run(["bench.tune", "--algorithm", "pseudo_label+soft_sign", "--dataset", "two_circles", "--trials", "2",
                "--steps", "20", "--params", "soft_temperature", "--scheduler", "fifo", "--concurrency", "1",
                "--final-seeds", "1", *common], plugin_env)
    assert "best parameters: soft_temperature=" in out
    (trials,) = glob.glob(os.path.join(results, "trials", "*.parquet"))
    assert [t["status"] for t in pq.read_table(trials).to_pylist()] == ["ok", "ok"]

    out = _run(["bench.perf", "--algorithms", "pseudo_label+soft_sign", "--dataset", "two_circles", "--network",
                "mlp_2_4_2", "--steps", "2", "--warmup", "1", "--threads", "1"], plugin_env)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("pseudo_label")}
    assert set(rows) == {"pseudo_label", "pseudo_label+soft_sign[meta_method=jvp]", "pseudo_label+soft_sign[meta_method=fd]"}
    for name in ("pseudo_label+soft_sign[meta_method=jvp]", "pseudo_label+soft_sign[meta_method=fd]"):
        assert rows[name][1:3] == ["soft_sign", "first"] and float(rows[name][5]) > 0  # ratio to its base
