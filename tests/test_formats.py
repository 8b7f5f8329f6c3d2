"""CIFAR-10/100, SVHN and STL-10 from files in their real on-disk formats (tiny fixtures), without the data.

Checks: our readers return exactly what the fixture writers wrote; torchvision's own parsers (with only their
md5 check switched off) agree with ours on the same files; malformed files get one-line errors; --download
fetches only missing files; and each dataset trains a few steps through the full bench.run path.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import datasets as D
from datasets import torchvision_sets
from format_fixtures import write_cifar10, write_cifar100, write_stl10, write_svhn

WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn, "stl10": write_stl10}


def _standardised(x_train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Independent standardisation: per-channel mean/std of the training pixels in [0, 1]."""
    f = x_train / 255.0
    mean, std = f.mean(axis=(0, 2, 3)), f.std(axis=(0, 2, 3))
    return (x / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_reader_returns_what_the_fixture_wrote(tmp_path, name):
    wrote = WRITERS[name](str(tmp_path))
    D.check_available(name, str(tmp_path))
    d = D.load(name, str(tmp_path))
    for split in ("train", "test"):
        x, y = getattr(d, f"x_{split}"), getattr(d, f"y_{split}")
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        np.testing.assert_array_equal(y.numpy(), wrote[f"y_{split}"])
        np.testing.assert_allclose(x.numpy(), _standardised(wrote["x_train"], wrote[f"x_{split}"]), atol=2e-5)
    if name == "stl10":
        np.testing.assert_allclose(d.x_extra_unlabeled.numpy(), _standardised(wrote["x_train"], wrote["x_unlabeled"]),
                                   atol=2e-5)
    else:
        assert d.x_extra_unlabeled is None


def _torchvision_arrays(name: str, root: str, monkeypatch) -> dict[str, np.ndarray]:
    """torchvision's parsers on the fixture, md5 check off: uint8 [N, C, H, W] images and int64 labels."""
    from torchvision import datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "svhn": tvd.SVHN, "stl10": tvd.STL10}[name]
    monkeypatch.setattr(cls, "_check_integrity", lambda self: True)
    module = sys.modules[cls.__module__]
    if hasattr(module, "check_integrity"):  # CIFAR also checks its meta file's md5
        monkeypatch.setattr(module, "check_integrity", lambda *a, **k: True)
    out = {}
    for split in ("train", "test"):
        ds = cls(root, train=split == "train") if name.startswith("cifar") else cls(root, split=split)
        data = ds.data.transpose(0, 3, 1, 2) if name.startswith("cifar") else ds.data  # CIFAR: HWC
        out[f"x_{split}"] = np.asarray(data)
        out[f"y_{split}"] = np.asarray(ds.targets if name.startswith("cifar") else ds.labels, dtype=np.int64)
    return out


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_our_readers_agree_with_torchvisions(tmp_path, name, monkeypatch):
    from datasets import image_formats as F

    WRITERS[name](str(tmp_path))
    tv = _torchvision_arrays(name, str(tmp_path), monkeypatch)
    paths = [str(tmp_path / r) for r in torchvision_sets._EXPECTED[name]]
    if name == "cifar10":
        ours = {"train": F.read_cifar_batches(paths[:5], "labels"), "test": F.read_cifar_batches(paths[5:], "labels")}
    elif name == "cifar100":
        ours = {"train": F.read_cifar_batches(paths[:1], "fine_labels"), "test": F.read_cifar_batches(paths[1:], "fine_labels")}
    elif name == "svhn":
        ours = {"train": F.read_svhn_mat(paths[0]), "test": F.read_svhn_mat(paths[1])}
    else:
        ours = {s: (F.read_stl10_images(paths[2 * i]), F.read_stl10_labels(paths[2 * i + 1]))
                for i, s in enumerate(("train", "test"))}
    for split, (x, y) in ours.items():
        np.testing.assert_array_equal(x.numpy(), tv[f"x_{split}"])
        np.testing.assert_array_equal(y.numpy(), tv[f"y_{split}"])


@pytest.mark.parametrize("name, victim, content", [
    ("cifar10", "cifar-10-batches-py/data_batch_3", b"not a pickle"),
    ("cifar100", "cifar-100-python/train", b"\x80\x02cos\nsystem\nq\x00."),  # a pickle that would import os.system
    ("svhn", "train_32x32.mat", b"MATLAB? no"),
    ("stl10", "stl10_binary/test_X.bin", b"\x00" * 1000),  # not a whole number of images
])
def test_malformed_files_get_one_line_errors(tmp_path, name, victim, content):
    WRITERS[name](str(tmp_path))
    (tmp_path / victim).write_bytes(content)
    with pytest.raises(D.DatasetUnavailable) as e:
        D.load(name, str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and name in msg and str(tmp_path / victim) in msg


def test_stl10_label_count_mismatch(tmp_path):
    write_stl10(str(tmp_path))
    (tmp_path / "stl10_binary" / "train_y.bin").write_bytes(bytes([1, 2, 3]))
    with pytest.raises(D.DatasetUnavailable, match="250 images but 3 labels"):
        D.load("stl10", str(tmp_path))


def test_download_fetches_only_missing_files(tmp_path, monkeypatch):
    """--download: with the files present nothing is fetched; with them missing torchvision's downloader runs
    (here a stand-in that writes the fixture, as the real one writes the published files) and the files load."""
    import torchvision.datasets as tvd

    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            write_cifar10(root)

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    d = D.load("cifar10", str(tmp_path / "fresh"), download=True)
    assert calls == [(str(tmp_path / "fresh"), True)] and d.x_train.shape == (250, 3, 32, 32)
    write_cifar10(str(tmp_path / "have"))
    D.load("cifar10", str(tmp_path / "have"), download=True)
    assert len(calls) == 1  # present files are read, not fetched again


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, *a, **k):
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>\nmore detail")

    monkeypatch.setattr(tvd, "SVHN", Offline)
    with pytest.raises(D.DatasetUnavailable) as e:
        D.load("svhn", str(tmp_path), download=True)
    assert "\n" not in str(e.value) and "could not download" in str(e.value) and "name resolution" in str(e.value)


@pytest.fixture(scope="module")
def bench_run_on_fixtures(tmp_path_factory):
    """One bench.run over all four fixtures (one Ray start): 100 labels, 4 steps of Pseudo-Label on cnn_small."""
    from bench.run import main
    from results import ResultStore

    root = tmp_path_factory.mktemp("data")
    for write in WRITERS.values():
        write(str(root))
    results = tmp_path_factory.mktemp("results")
    code = main(["--datasets", ",".join(sorted(WRITERS)), "--labels", "100", "--steps", "4", "--network", "cnn_small",
                 "--algorithms", "pseudo_label", "--seeds", "1", "--data-root", str(root),
                 "--results-dir", str(results), "--num-cpus", "2"])
    return code, ResultStore(results).load_runs()


@pytest.mark.ray
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_each_format_trains_through_bench_run(bench_run_on_fixtures, name):
    code, runs = bench_run_on_fixtures
    assert code == 0
    row = runs[runs["dataset"] == name]
    assert len(row) == 1, runs[["dataset", "status"]]
    row = row.iloc[0]
    assert row["status"] == "ok", row["error_message"]
    assert row["steps_done"] == 4 and row["n_labels"] == 100
    assert 0.0 <= row["test_error"] <= 1.0
