"""Dataset registry: shapes, fixed test splits, class counts, IDX loading, and missing-file errors."""
import gzip
import os
import struct

import numpy as np
import pytest
import torch

import datasets as D
from datasets import fashion_mnist, torchvision_sets

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


def test_list_and_unknown_name():
    names = D.list_datasets()
    assert {"two_circles", "digits", "fashion_mnist", "cifar10", "cifar100", "svhn", "stl10", "synthetic_landmarks",
            "aflw"} <= set(names)
    for call in (D.get_info, D.load, D.check_available):
        with pytest.raises(ValueError) as e:
            call("imagenet_tiny")
        msg = str(e.value)
        assert "\n" not in msg and "imagenet_tiny" in msg and all(n in msg for n in names)


def test_infos_are_consistent():
    for name in D.list_datasets():
        info = D.get_info(name)
        assert info.name == name and len(info.train_class_counts) == info.num_classes and info.task in D.TASKS
        if info.task == D.CLASSIFICATION:
            assert info.num_outputs == info.num_classes and info.metric == "error" and info.target_dim == 0
            assert info.n_train == sum(info.train_class_counts)
            if info.paper_n_val is not None:
                assert info.paper_n_val % info.num_classes == 0
        else:
            assert info.num_classes == 0 and info.num_outputs == info.target_dim == 10 and info.metric == "nme_iod"
            assert info.n_train == info.pool_size > 0


def test_info_rejects_inconsistent_tasks():
    with pytest.raises(ValueError, match="task must be one of"):
        D.DatasetInfo("x", 2, (2,), True, (1, 1), None, "", task="ranking")
    with pytest.raises(ValueError, match="regression set needs"):
        D.DatasetInfo("x", 0, (2,), True, (), None, "", task=D.REGRESSION)  # no target_dim / pool_size
    with pytest.raises(ValueError, match="one class count per class"):
        D.DatasetInfo("x", 3, (2,), True, (1, 1), None, "")
    # existing classification sets need no new fields: the defaults describe them
    assert D.DatasetInfo("x", 2, (2,), True, (4, 5), None, "").n_train == 9


@pytest.mark.parametrize("name", [n for n in D.list_datasets() if D.get_info(n).offline])
def test_offline_sets_match_their_static_info(name):
    d = D.load(name)
    info = d.info
    assert d.x_train.dtype == torch.float32 and d.x_test.dtype == torch.float32
    assert tuple(d.x_train.shape[1:]) == info.input_shape == tuple(d.x_test.shape[1:])
    assert len(d.x_train) == len(d.y_train) == info.n_train and len(d.x_test) == len(d.y_test)
    if info.task == D.CLASSIFICATION:
        assert d.y_train.dtype == torch.int64 and d.y_test.dtype == torch.int64
        assert tuple(np.bincount(d.y_train.numpy(), minlength=info.num_classes)) == info.train_class_counts
    else:
        assert d.y_train.dtype == torch.float32 and d.y_test.dtype == torch.float32
        assert d.y_train.shape[1:] == d.y_test.shape[1:] == (info.target_dim,)
    assert d.x_extra_unlabeled is None
    D.check_available(name)  # offline: never raises
    assert D.load(name) is d  # cached in-process


def test_two_circles_split_sizes_and_fixed_test():
    from sklearn.datasets import make_circles

    d = D.load("two_circles")
    assert len(d.y_train) == 7500 and len(d.y_test) == 2500 and d.info.num_classes == 2
    np.testing.assert_array_equal(np.bincount(d.y_test.numpy()), [1250, 1250])
    # Train and test partition exactly the 10,000 points of the paper's make_circles call.
    x, y = make_circles(n_samples=10000, noise=0.1, factor=0.5, random_state=0)
    ours = np.concatenate([d.x_train.numpy(), d.x_test.numpy()]).astype(np.float32)
    key = lambda a: np.lexsort(a.T)
    np.testing.assert_array_equal(ours[key(ours)], x.astype(np.float32)[key(x.astype(np.float32))])
    assert sorted(np.concatenate([d.y_train, d.y_test]).tolist()) == sorted(y.tolist())


def test_two_circles_paper_protocol():
    d = D.load("two_circles")
    n_val = D.resolve_n_val(d.info, 50, "paper")
    D.validate_request(d.info, 50, n_val)
    s = D.make_split("two_circles", d.y_train, 2, 50, n_val, split_seed=0)
    assert (len(s.labeled), len(s.val), len(s.unlabeled)) == (50, 1000, 6450)


def test_digits_split_and_normalisation():
    from sklearn.datasets import load_digits

    d = D.load("digits")
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    # Stratified 20% test: within one example of 20% of each class.
    full = np.bincount(load_digits().target)
    assert np.all(np.abs(np.bincount(d.y_test.numpy()) - 0.2 * full) <= 1)
    assert abs(d.x_train.mean().item()) < 1e-4 and abs(d.x_train.std().item() - 1) < 1e-3


# ---- Fashion-MNIST ----------------------------------------------------------------------------

def _write_idx(path, arr, compress):
    """Independent IDX writer: magic 0x0000 0x08 ndim, big-endian dims, raw uint8 data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    blob = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    opener = gzip.open if compress else open
    with opener(path + (".gz" if compress else ""), "wb") as f:
        f.write(blob)


def _synthetic_fashion(folder, compress=True, n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    os.makedirs(folder, exist_ok=True)
    for name, arr in data.items():
        _write_idx(os.path.join(folder, name), arr, compress)
    return data


def _check_round_trip(d, data):
    x_tr = data["train-images-idx3-ubyte"] / 255.0
    mean, std = x_tr.mean(), x_tr.std()  # one channel: per-channel stats are whole-array stats
    for x, raw in ((d.x_train, x_tr), (d.x_test, data["t10k-images-idx3-ubyte"] / 255.0)):
        assert x.shape == (len(raw), 1, 28, 28) and x.dtype == torch.float32
        np.testing.assert_allclose(x.numpy()[:, 0], (raw - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(d.y_train.numpy(), data["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(d.y_test.numpy(), data["t10k-labels-idx1-ubyte"])
    assert d.y_train.dtype == torch.int64


@pytest.mark.parametrize("layout, compress", [("flat", True), ("torchvision", True), ("flat", False)])
def test_fashion_mnist_from_synthetic_idx(tmp_path, layout, compress):
    folder = tmp_path if layout == "flat" else tmp_path / "FashionMNIST" / "raw"
    data = _synthetic_fashion(str(folder), compress=compress)
    D.check_available("fashion_mnist", str(tmp_path))
    _check_round_trip(D.load("fashion_mnist", str(tmp_path)), data)


def test_fashion_mnist_missing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "no-debian-package"))
    for call in (D.check_available, D.load):
        with pytest.raises(D.DatasetUnavailable) as e:
            call("fashion_mnist", str(tmp_path))
        msg = str(e.value)
        assert "\n" not in msg and str(tmp_path) in msg and "dataset-fashion-mnist" in msg and "--data-root" in msg


def test_fashion_mnist_malformed_file(tmp_path):
    _synthetic_fashion(str(tmp_path), compress=False)
    with open(tmp_path / "train-images-idx3-ubyte", "wb") as f:
        f.write(b"not an idx file")
    with pytest.raises(D.DatasetUnavailable, match="IDX") as e:
        D.load("fashion_mnist", str(tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION), reason=f"{DEBIAN_FASHION} absent (Debian package dataset-fashion-mnist)")
def test_fashion_mnist_from_debian_package(tmp_path):
    D.check_available("fashion_mnist")
    d = D.load("fashion_mnist", str(tmp_path))  # empty data_root: falls back to the Debian folder
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert tuple(np.bincount(d.y_train.numpy())) == d.info.train_class_counts
    with gzip.open(os.path.join(DEBIAN_FASHION, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    np.testing.assert_array_equal(d.y_test.numpy(), labels)
    assert abs(d.x_train.mean().item()) < 1e-4 and abs(d.x_train.std().item() - 1) < 1e-3


# ---- torchvision sets -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "stl10"])
def test_torchvision_sets_missing_files(tmp_path, name):
    for call in (D.check_available, D.load):
        with pytest.raises(D.DatasetUnavailable) as e:
            call(name, str(tmp_path))
        msg = str(e.value)
        assert "\n" not in msg and str(tmp_path) in msg and "--download" in msg


def test_torchvision_missing_root_and_default_root(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(D.DatasetUnavailable, match=str(missing)):
        D.check_available("cifar10", str(missing))
    monkeypatch.setattr(torchvision_sets, "DEFAULT_DATA_ROOT", str(tmp_path / "default"))
    with pytest.raises(D.DatasetUnavailable, match="default"):
        D.check_available("svhn")  # no data_root: the default cache folder is checked
    D.check_available("svhn", download=True)  # download requested: nothing to check yet

