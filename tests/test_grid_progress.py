"""The driver's ETAs (from measured speed, computed by hand here) and the multi-node check of a
local results path (its verdict for nodes that do or do not see the folder)."""
from __future__ import annotations

import pytest

from bench.cli_errors import UsageError
from bench.config import RunConfig
from bench.grid_progress import EtaModel, duration
from bench.ray_node import reachability_verdict


def _cfg(algorithm: str, steps: int, seed: int = 0) -> RunConfig:
    return RunConfig(dataset="two_circles", n_labels=50, algorithm=algorithm, network="mlp_2_4_2", steps=steps,
                     eval_every=steps // 4, seed=seed)


def test_run_and_grid_eta_come_from_measured_steps_per_second():
    a, b, c = _cfg("supervised", 1000), _cfg("supervised", 1000, seed=1), _cfg("pseudo_label", 400)
    eta = EtaModel([a, b, c], slots=2)
    assert eta.run_eta(a.run_id) is None and eta.grid_eta() is None  # nothing measured yet

    eta.start(a.run_id, now=0.0)
    eta.update(a.run_id, 100, now=10.0)  # 10 steps/s
    assert eta.run_eta(a.run_id) == pytest.approx(900 / 10)
    # b has not started: as fast as the measured run of the same algorithm and network
    assert eta.run_eta(b.run_id) == pytest.approx(1000 / 10)
    # c (another algorithm) falls back to every measured run
    assert eta.run_eta(c.run_id) == pytest.approx(400 / 10)
    assert eta.grid_eta() == pytest.approx((90 + 100 + 40) / 2)  # run-seconds left over 2 runs at once

    eta.update(a.run_id, 300, now=20.0)  # 20 steps/s over the last interval: averaged with the first
    assert eta.run_eta(a.run_id) == pytest.approx(700 / 15)

    eta.start(c.run_id, now=20.0)
    eta.update(c.run_id, 100, now=30.0)  # 10 steps/s
    assert eta.run_eta(c.run_id) == pytest.approx(300 / 10)

    # a restarted trial (lost worker) is measured from its restart, from the steps it had done
    eta.start(a.run_id, now=100.0)
    eta.update(a.run_id, 400, now=105.0)  # 100 more steps in 5 s
    assert eta.run_eta(a.run_id) == pytest.approx(600 / ((15 + 20) / 2))

    eta.finish(a.run_id)
    eta.finish(c.run_id)
    assert eta.grid_eta() == pytest.approx(eta.run_eta(b.run_id))  # one run left: one slot used
    eta.finish(b.run_id)
    assert eta.grid_eta() == 0.0


@pytest.mark.parametrize("seconds,text", [(None, "?"), (0, "0s"), (45.4, "45s"), (99, "99s"), (100, "1m"),
                                          (5999, "99m"), (6000, "1h40m"), (3 * 3600 + 300, "3h05m"),
                                          (2 * 86400 + 4 * 3600, "2d04h")])
def test_duration_text(seconds, text):
    assert duration(seconds) == text


def _node(ip: str, node_id: str) -> dict:
    return {"NodeManagerAddress": ip, "NodeID": node_id, "Alive": True}


def test_a_local_results_path_some_nodes_do_not_see_is_refused_naming_them():
    nodes = [_node("10.0.0.1", "aaaaaaaa1111"), _node("10.0.0.2", "bbbbbbbb2222"), _node("10.0.0.3", "cccccccc3333")]
    with pytest.raises(UsageError) as e:
        reachability_verdict("/data/res", nodes, [True, False, False])
    msg = str(e.value)
    assert "\n" not in msg and "/data/res" in msg and "2 of the cluster's 3 nodes" in msg
    assert "10.0.0.2 (bbbbbbbb)" in msg and "10.0.0.3 (cccccccc)" in msg and "10.0.0.1" not in msg
    assert "s3://" in msg  # says what to use instead
    note = reachability_verdict("/data/res", nodes, [True, True, True])
    assert "all 3 nodes of the cluster see it" in note
