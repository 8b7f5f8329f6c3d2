"""Landmark regression data: the papers' metric, the shift augmentation, and the synthetic_landmarks set."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

import datasets as D
from datasets import landmark_augment as LA
from datasets import synthetic_landmarks as S
from datasets.landmarks import EYES, failure_rate, interocular_distance, nme, nme_per_sample


# ---- metric ------------------------------------------------------------------------------------

def _nme_loop(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The L2I code's evaluate(), written out with loops: per image, mean point distance / eye distance, in %."""
    out = []
    for p, t in zip(pred.reshape(-1, 5, 2), target.reshape(-1, 5, 2)):
        iod = math.dist(t[0], t[1])
        out.append(100 * sum(math.dist(a, b) for a, b in zip(p, t)) / 5 / iod)
    return np.array(out)


def test_nme_matches_an_independent_loop():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(64, 10, generator=g, dtype=torch.float64) * 60
    pred = target + torch.randn(64, 10, generator=g, dtype=torch.float64) * 3
    want = _nme_loop(pred.numpy(), target.numpy())
    np.testing.assert_allclose(nme_per_sample(pred, target).numpy(), want, rtol=1e-12)
    assert nme(pred, target) == pytest.approx(want.mean(), rel=1e-12)
    assert failure_rate(pred, target) == pytest.approx(100 * (want > 10).mean())
    assert failure_rate(pred, target, threshold_pct=want.max() + 1) == 0.0


def test_nme_closed_form_and_invariances():
    # eyes 20 px apart; every prediction off by (3, 4): distance 5 -> 25% of the inter-ocular distance
    target = torch.tensor([[10.0, 30, 30, 30, 20, 40, 12, 50, 28, 50]])
    pred = target + torch.tensor([3.0, 4.0]).repeat(5)
    assert interocular_distance(target).item() == 20.0 and EYES == (0, 1)
    assert nme(pred, target) == pytest.approx(25.0)
    assert nme(target, target) == 0.0
    # the same error at twice the scale, or shifted elsewhere, is the same normalised error
    assert nme(2 * pred, 2 * target) == pytest.approx(25.0)
    assert nme(pred + 7, target + 7) == pytest.approx(25.0)


def test_nme_rejects_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        nme(torch.zeros(2, 10), torch.zeros(3, 10))
    with pytest.raises(ValueError, match="zero inter-ocular"):
        nme(torch.zeros(2, 10), torch.zeros(2, 10))
    with pytest.raises(ValueError, match=r"\[N, 2L\]"):
        nme(torch.zeros(2, 9), torch.zeros(2, 9))


# ---- shift augmentation ------------------------------------------------------------------------

def test_shift_matches_brute_force_pad_and_crop():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 2, 11, 9, generator=g)
    y = torch.rand(16, 10, generator=g) * 9
    xs, ys, shifts = LA.random_shift(x, 3, torch.Generator().manual_seed(5), y)
    assert shifts.dtype == torch.long and shifts.shape == (16, 2) and int(shifts.abs().max()) <= 3
    assert len({tuple(s) for s in shifts.tolist()}) > 4  # the draws vary
    k = 3
    padded = TF.pad(x, [k, k, k, k], padding_mode="reflect")
    for i, (dx, dy) in enumerate(shifts.tolist()):
        # content moved by (dx, dy): the window starts (dx, dy) before the image in padded coordinates
        want = padded[i, :, k - dy : k - dy + 11, k - dx : k - dx + 9]
        torch.testing.assert_close(xs[i], want, rtol=0, atol=0)
        want_y = y[i].clone()
        want_y[0::2] += dx
        want_y[1::2] += dy
        torch.testing.assert_close(ys[i], want_y)
    torch.testing.assert_close(LA.unshift_targets(ys, shifts), y)


def test_shift_moves_a_drawn_landmark_with_its_target():
    x = torch.zeros(6, 1, 20, 20)
    y = torch.tensor([[5.0, 7.0] * 5, [14.0, 3.0] * 5, [10.0, 10.0] * 5, [3.0, 16.0] * 5, [8.0, 12.0] * 5,
                      [16.0, 16.0] * 5])
    for i, (px, py) in enumerate(y[:, :2].long().tolist()):
        x[i, 0, py, px] = 1.0  # pixel (row py, column px) is the point (px, py)
    xs, ys, _ = LA.random_shift(x, 3, torch.Generator().manual_seed(2), y)
    for i in range(6):
        row, col = divmod(int(xs[i, 0].argmax()), 20)
        assert (col, row) == (int(ys[i, 0]), int(ys[i, 1]))


def test_shift_draws_come_from_the_generator_only():
    x = torch.randn(8, 1, 12, 12)
    torch.manual_seed(0)
    a = LA.random_shift(x, 2, torch.Generator().manual_seed(9))
    torch.manual_seed(123)
    b = LA.random_shift(x, 2, torch.Generator().manual_seed(9))
    torch.testing.assert_close(a[0], b[0])
    assert torch.equal(a[2], b[2]) and a[1] is None
    # draw order: dx [B], then dy [B]
    g = torch.Generator().manual_seed(9)
    dx = torch.randint(-2, 3, (8,), generator=g)
    dy = torch.randint(-2, 3, (8,), generator=g)
    assert torch.equal(a[2], torch.stack([dx, dy], 1))


def test_shift_refuses_shifts_as_large_as_the_image():
    with pytest.raises(ValueError, match="smaller than the image"):
        LA.shift_images(torch.zeros(1, 1, 4, 4), torch.tensor([[4, 0]]))
    # random_shift caps the range at the image size instead
    xs, _, shifts = LA.random_shift(torch.randn(32, 1, 3, 3), 10, torch.Generator().manual_seed(0))
    assert int(shifts.abs().max()) <= 2 and xs.shape == (32, 1, 3, 3)


def test_max_shift_per_dataset():
    assert LA.landmark_max_shift("aflw") == 4 and LA.landmark_max_shift("synthetic_landmarks") == 3
    assert LA.landmark_max_shift("cifar10") == 0


# ---- synthetic_landmarks -----------------------------------------------------------------------

def test_synthetic_set_matches_its_info_and_is_cached():
    d = D.load("synthetic_landmarks")
    info = D.get_info("synthetic_landmarks")
    assert info.task == D.REGRESSION and info.metric == "nme_iod" and info.num_outputs == 10 and info.n_train == 10_000
    assert d.x_train.shape == (10_000, 1, S.SIZE, S.SIZE) and d.x_test.shape == (3_000, 1, S.SIZE, S.SIZE)
    assert d.y_train.shape == (10_000, 10) and d.y_test.shape == (3_000, 10)
    assert d.y_train.dtype == torch.float32 and d.x_train.dtype == torch.float32
    assert abs(d.x_train.mean().item()) < 1e-3 and abs(d.x_train.std().item() - 1) < 1e-3
    # every landmark inside the image, eyes apart
    assert float(d.y_train.min()) > 0 and float(d.y_train.max()) < S.SIZE - 1
    assert float(interocular_distance(d.y_train).min()) > 3
    assert D.load("synthetic_landmarks") is d


def test_generation_is_a_function_of_the_seed():
    a, b, c = S.generate(40, 7), S.generate(40, 7), S.generate(40, 8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.allclose(a[1], c[1])
    # train and test come from different seeds: no image is in both
    d = D.load("synthetic_landmarks")
    assert not torch.equal(d.x_train[:100], d.x_test[:100])


def test_disk_cache_returns_a_fresh_generation_and_survives_bad_files(tmp_path, monkeypatch):
    from datasets import generated_cache

    monkeypatch.setattr(generated_cache, "CACHE_DIR", str(tmp_path / "cache"))
    fresh = S.generate(30, 5)
    first = S.generate_cached(30, 5)  # generates and stores
    files = list((tmp_path / "cache").glob("synthetic_landmarks-*.npz"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob("*.tmp"))
    monkeypatch.setattr(S, "generate", lambda n, seed: pytest.fail("regenerated although cached"))
    second = S.generate_cached(30, 5)  # read back
    for a, b, c in zip(fresh, first, second):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    monkeypatch.undo()
    monkeypatch.setattr(generated_cache, "CACHE_DIR", str(tmp_path / "cache"))
    files[0].write_bytes(b"truncated")  # a broken entry is generated again
    np.testing.assert_array_equal(S.generate_cached(30, 5)[0], fresh[0])
    (tmp_path / "ro").write_text("a file where the cache folder should be")
    monkeypatch.setattr(generated_cache, "CACHE_DIR", str(tmp_path / "ro"))
    np.testing.assert_array_equal(S.generate_cached(30, 5)[1], fresh[1])  # unwritable: still the data


def test_the_set_varies_in_pose_scale_lighting_and_occlusion():
    p = S.draw_params(5000, np.random.default_rng(0))
    assert np.degrees(p["roll"]).min() < -20 and np.degrees(p["roll"]).max() > 20
    assert np.degrees(np.abs(p["yaw"])).max() > 30 and p["s"].max() / p["s"].min() > 1.2
    assert 0.3 < p["occlude"].mean() < 0.5 and p["contrast"].max() / p["contrast"].min() > 2
    y = torch.from_numpy(S.generate(2000, 0)[1])
    # predicting the mean landmarks is far off: the landmarks really move
    assert nme(y.mean(0).expand_as(y), y) > 20


def _clean_params(n: int, seed: int) -> dict[str, np.ndarray]:
    """Parameters with no lighting, noise, occluder or blobs, so pixels show the drawn features as they are."""
    p = S.draw_params(n, np.random.default_rng(seed))
    p.update(noise=np.zeros(n), grad=np.zeros(n), contrast=np.ones(n), brightness=np.zeros(n), occlude=np.zeros(n),
             n_blobs=np.zeros(n))
    return p


def test_landmarks_are_where_the_features_are_drawn():
    p = _clean_params(300, 3)
    lay = S.feature_layout(p)
    img = S._render_chunk(p, lay, np.random.default_rng(0)).astype(np.float64) / 255
    y = S.landmark_targets(lay).reshape(-1, 5, 2)
    skin = np.clip(p["bg"] + p["skin_delta"], 0.3, 0.95)
    feature = np.clip(skin - p["feat_dark"], 0, 1)
    eye_px = np.minimum(p["eye_r"] * p["eye_open"], p["eye_r"]) * p["s"] * np.cos(p["pitch"]) * np.cos(p["yaw"])
    checked = 0
    for i in np.flatnonzero(eye_px > 1.0):
        for e in (0, 1):  # an eye centre is drawn in the eye's colour
            col, row = np.rint(y[i, e]).astype(int)
            assert abs(img[i, row, col] - feature[i]) < 0.1, (i, e)
            checked += 1
    assert checked > 200
    # the nose tip lies midway between the two nostrils, the mouth corners end the mouth stroke
    np.testing.assert_allclose((lay["nostril_l"] + lay["nostril_r"]) / 2, lay["nose"], atol=1e-9)


def test_patch_drawing_equals_whole_image_drawing_at_the_extremes():
    n = 64
    p = _clean_params(n, 4)
    p["s"] = np.full(n, S.S_MAX)
    for key, hi in (("eye_r", 0.14), ("mouth_w", 0.36), ("lip", 0.09), ("smile", 0.2), ("eye_open", 0.95)):
        p[key] = np.full(n, hi)
    p["cx"] = np.linspace(0, S.SIZE - 1, n)  # features near and across the borders too
    lay = S.feature_layout(p)
    s = p["s"]
    draws = [("ellipse", (lay["brow_l"], s * 0.17, s * 0.04, p["bg"] * 0 + 0.1), S._FEATURE_WINDOW),
             ("ellipse", (lay["eye_r"], s * p["eye_r"], s * p["eye_r"], p["bg"] * 0), S._FEATURE_WINDOW),
             ("stroke", (lay["mouth_l"], lay["mouth_r"], s * 0.5 * p["smile"], s * p["lip"], p["bg"] * 0), S._MOUTH_WINDOW),
             ("ellipse", (np.stack([p["cx"], p["cy"]], 1), np.full(n, 10.0), np.full(n, 7.0), p["bg"] * 0), S._BLOB_WINDOW),
             ("ellipse", (np.stack([p["cx"], p["cy"]], 1), s * 0.85, s, p["bg"] * 0), S._FACE_WINDOW)]
    for method, args, window in draws:
        whole, patch = S._Canvas(p["bg"], p["roll"]), S._Canvas(p["bg"], p["roll"])
        getattr(whole, method)(*args)
        getattr(patch, method)(*args, window=window)
        np.testing.assert_allclose(patch.img, whole.img, atol=1e-6, err_msg=method)


@pytest.mark.slow
def test_one_percent_of_the_labels_is_clearly_worse_than_all():
    """Cheap version of python -m datasets.landmark_difficulty (see docs/datasets.md for the full run)."""
    from datasets.landmark_difficulty import supervised_error

    few = supervised_error("synthetic_landmarks", 100, steps=300, seed=0)
    every = supervised_error("synthetic_landmarks", 10_000, steps=300, seed=0)
    assert every["test_nme"] < 0.8 * few["test_nme"], (few, every)
    assert every["test_nme"] < 0.8 * every["mean_nme"]
