"""aflw: the L2I papers' AFLW release, loaded from a small fixture written in the real layout."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import datasets as D
from datasets import aflw
from format_fixtures import write_aflw


def test_info_is_the_papers_split():
    info = D.get_info("aflw")
    assert info.task == D.REGRESSION and info.input_shape == (1, 60, 60) and info.num_outputs == 10
    assert info.n_train == 10_122 and aflw.N_TEST == 2_991 and info.paper_n_val == 1_012  # 001 Sec. 5.2
    assert not info.offline
    # 001 Table 1's label counts are 1% / 2% / 5% (rounded down) of the 9,110 training images left after 1,012
    # for validation
    assert [int(f * (info.n_train - info.paper_n_val)) for f in (0.01, 0.02, 0.05)] == [91, 182, 455]


@pytest.mark.parametrize("folder", ["aflw_release-2", "aflw", ""])
def test_loads_the_fixture_in_the_real_layout(tmp_path, folder):
    wrote = write_aflw(str(tmp_path), folder=folder)
    D.check_available("aflw", str(tmp_path))
    d = D.load("aflw", str(tmp_path))
    assert d.x_train.shape == (40, 1, 60, 60) and d.x_test.shape == (12, 1, 60, 60)
    assert d.y_train.shape == (40, 10) and d.y_train.dtype == torch.float32 and d.x_train.dtype == torch.float32
    for subset, y in (("train", d.y_train), ("test", d.y_test)):
        w = wrote[subset]
        # (x, y) in original pixels -> 60x60 pixels: x * 60 / width, y * 60 / height (the L2I code's mapping)
        want = (w["points"] * 60 / w["sizes"][:, None, :]).reshape(-1, 10)
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-6)
    assert abs(d.x_train.mean().item()) < 1e-4 and abs(d.x_train.std().item() - 1) < 1e-3


def test_pixels_are_the_l2i_pipeline_and_landmarks_sit_on_the_marks(tmp_path):
    """Pixels: torchvision's Resize((60, 60)) then to_grayscale, as the official L2I code. The fixture draws a
    bright square at every landmark, so the brightest pixel near each target must be within a pixel of it."""
    from PIL import Image
    from torchvision.transforms import functional as TVF

    wrote = write_aflw(str(tmp_path), n_train=10, n_test=4, image_format="jpg")
    d = D.load("aflw", str(tmp_path))
    raw = []
    for name in wrote["train"]["names"]:
        with Image.open(os.path.join(tmp_path, "aflw_release-2", "output", name)) as im:
            raw.append(np.asarray(TVF.to_grayscale(TVF.resize(im.convert("RGB"), [60, 60])), dtype=np.float64))
    raw = np.stack(raw) / 255.0
    want = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(d.x_train[:, 0].numpy(), want, atol=1e-4)
    img = d.x_train[:, 0].numpy()
    for i, pts in enumerate(d.y_train.view(-1, 5, 2).numpy()):
        for x, y in pts:
            r0, c0 = int(round(y)) - 2, int(round(x)) - 2
            win = img[i, max(r0, 0) : r0 + 5, max(c0, 0) : c0 + 5]
            r, c = np.unravel_index(win.argmax(), win.shape)
            assert abs(max(r0, 0) + r - y) <= 1.5 and abs(max(c0, 0) + c - x) <= 1.5


def test_load_is_cached_and_reread_when_the_release_changes(tmp_path):
    write_aflw(str(tmp_path))
    a = D.load("aflw", str(tmp_path))
    assert D.load("aflw", str(tmp_path)) is a
    write_aflw(str(tmp_path), n_train=30, seed=9)
    assert D.load("aflw", str(tmp_path)).x_train.shape[0] == 30


@pytest.mark.parametrize("remove", ["aflw_train_images.txt", "aflw_test_keypoints.mat", "output"])
def test_missing_files_say_what_to_put_where(tmp_path, remove):
    write_aflw(str(tmp_path))
    path = tmp_path / "aflw_release-2" / remove
    if path.is_dir():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    else:
        path.unlink()
    for call in (D.check_available, D.load):
        with pytest.raises(D.DatasetUnavailable) as e:
            call("aflw", str(tmp_path))
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg and "aflw_release-2" in msg and "--data-root" in msg


def test_no_data_root_and_download_do_not_skip_the_check(tmp_path):
    for root in (None, str(tmp_path / "nope")):
        with pytest.raises(D.DatasetUnavailable, match="--data-root"):
            D.check_available("aflw", root, download=True)  # there is no download: still checked


def test_malformed_release_gets_one_line_errors(tmp_path):
    from scipy.io import savemat

    write_aflw(str(tmp_path))
    base = tmp_path / "aflw_release-2"
    savemat(base / "aflw_train_keypoints.mat", {"gt": np.zeros((3, 5, 2))})
    with pytest.raises(D.DatasetUnavailable, match=r"expected \(40, 5, 2\)") as e:
        D.load("aflw", str(tmp_path))
    assert "\n" not in str(e.value)
    write_aflw(str(tmp_path))
    (base / "output" / "image00003_test.png").write_bytes(b"not an image")
    with pytest.raises(D.DatasetUnavailable, match="cannot read image") as e:
        D.load("aflw", str(tmp_path))
    assert "\n" not in str(e.value)

