"""Scarce-label splits: balance, disjointness, coverage, determinism, hashing, and rejected requests."""
import numpy as np
import pytest
import torch

from datasets import DatasetInfo, SplitError, get_info, make_split, resolve_n_val, validate_request
from datasets.protocol import split_hash

K = 4
# An imbalanced pool: class c has 30 + 10c members, shuffled so indices are not grouped by class.
Y = np.random.default_rng(123).permutation(np.repeat(np.arange(K), [30, 40, 50, 60]))

INFO = DatasetInfo("toy4", K, (2,), True, (30, 40, 50, 60), 8, "test pool")


def _split(seed=0, n_labels=8, n_val=12, y=Y, name="toy4"):
    return make_split(name, y, K, n_labels, n_val, seed)


def test_class_balanced_counts():
    s = _split(n_labels=8, n_val=12)
    np.testing.assert_array_equal(np.bincount(Y[s.labeled], minlength=K), [2] * K)
    np.testing.assert_array_equal(np.bincount(Y[s.val], minlength=K), [3] * K)
    # The unlabeled set holds the remainder of every class.
    np.testing.assert_array_equal(np.bincount(Y[s.unlabeled], minlength=K), np.bincount(Y) - 5)


def test_disjoint_sorted_and_covering():
    s = _split()
    parts = [s.labeled, s.val, s.unlabeled]
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0)  # sorted, no duplicates
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.intersect1d(parts[i], parts[j]).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(Y)))


def test_deterministic_and_torch_input_equivalent():
    a, b = _split(seed=3), _split(seed=3, y=torch.from_numpy(Y))
    for x, y in ((a.labeled, b.labeled), (a.val, b.val), (a.unlabeled, b.unlabeled)):
        np.testing.assert_array_equal(x, y)
    assert a.split_hash == b.split_hash
    assert len(a.split_hash) == 16 and int(a.split_hash, 16) >= 0


def test_split_seeds_give_different_labeled_sets():
    labeled = {tuple(_split(seed=s).labeled) for s in range(5)}
    assert len(labeled) == 5
    assert len({_split(seed=s).split_hash for s in range(5)}) == 5


def test_dataset_name_is_part_of_the_seed_and_hash():
    a, b = _split(name="toy4"), _split(name="other")
    assert a.split_hash != b.split_hash


def test_independent_of_global_rng_state():
    torch.manual_seed(0)
    np.random.seed(0)
    a = _split(seed=7)
    torch.manual_seed(999)
    np.random.seed(999)
    torch.rand(10)
    np.random.rand(10)
    b = _split(seed=7)
    np.testing.assert_array_equal(a.labeled, b.labeled)
    np.testing.assert_array_equal(a.val, b.val)
    assert a.split_hash == b.split_hash


def test_hash_changes_when_any_index_changes():
    s = _split()
    base = split_hash("toy4", s.labeled, s.val, s.unlabeled)
    assert base == s.split_hash
    for which in range(3):
        arrays = [s.labeled.copy(), s.val.copy(), s.unlabeled.copy()]
        arrays[which][0] += 1000
        assert split_hash("toy4", *arrays) != base
    # Moving one index from val to unlabeled (same union) also changes the hash.
    moved = split_hash("toy4", s.labeled, s.val[1:], np.sort(np.append(s.unlabeled, s.val[0])))
    assert moved != base


def test_split_arrays_are_read_only():
    s = _split()
    with pytest.raises(ValueError):
        s.labeled[0] = 0


def test_zero_val_is_allowed():
    s = _split(n_labels=4, n_val=0)
    assert s.val.size == 0 and s.labeled.size == 4 and s.unlabeled.size == len(Y) - 4


@pytest.mark.parametrize(
    "n_labels, n_val, fragment",
    [
        (0, 0, "positive"),
        (-4, 0, "positive"),
        (2, 0, "fewer labels than classes"),
        (6, 0, "multiple of the 4 classes"),
        (8, -4, ">= 0"),
        (8, 6, "multiple of the 4 classes"),
        (124, 0, "more labels than exist"),  # 31 per class > 30 in the smallest class
        (60, 64, "more labels than exist"),
    ],
)
def test_impossible_requests_raise_one_line(n_labels, n_val, fragment):
    for call in (lambda: validate_request(INFO, n_labels, n_val), lambda: _split(n_labels=n_labels, n_val=n_val)):
        with pytest.raises(SplitError) as e:
            call()
        msg = str(e.value)
        assert fragment in msg and "\n" not in msg


def test_no_unlabeled_left_raises():
    info = DatasetInfo("flat", 2, (2,), True, (5, 5), None, "")
    with pytest.raises(SplitError, match="no unlabeled") as e:
        validate_request(info, 6, 4)
    assert "\n" not in str(e.value)
    with pytest.raises(SplitError, match="no unlabeled"):
        make_split("flat", np.array([0, 1] * 5), 2, 6, 4, 0)


def test_make_split_checks_actual_counts_not_just_static_info():
    y = np.array([0] * 3 + [1] * 50)
    with pytest.raises(SplitError, match="more labels than exist"):
        make_split("x", y, 2, 8, 0, 0)


def test_labels_out_of_range_raise():
    with pytest.raises(SplitError, match="0..1"):
        make_split("x", np.array([0, 1, 2, 1]), 2, 2, 0, 0)


def test_resolve_n_val():
    info = get_info("two_circles")
    assert resolve_n_val(info, 50) == 50  # scarce: as many validation labels as training labels
    assert resolve_n_val(info, 50, "paper") == 1000
    assert resolve_n_val(info, 50, "paper", n_val=20) == 20  # explicit wins
    assert get_info("cifar10").paper_n_val == 5000 and get_info("svhn").paper_n_val == 1000
    with pytest.raises(SplitError, match="no paper validation size"):
        resolve_n_val(get_info("digits"), 50, "paper")
    with pytest.raises(SplitError, match="scarce, paper"):
        resolve_n_val(info, 50, "bogus")


def test_static_validation_of_real_sets():
    validate_request(get_info("cifar10"), 40, 5000)
    validate_request(get_info("svhn"), 1000, 1000)
    with pytest.raises(SplitError, match="more labels than exist"):
        validate_request(get_info("svhn"), 40_000, 10_000)  # 5,000 per class > 4,659 in class 9
    with pytest.raises(SplitError, match="multiple of the 100 classes"):
        validate_request(get_info("cifar100"), 250, 0)


# ---- classification splits are unchanged by the regression protocol --------------------------

# Computed with the code before the regression protocol existed (commit 728cb60): (dataset, n_labels, n_val, seed).
HASHES_BEFORE = {
    ("two_circles", 50, 50, 0): "2d0eb3c0daaeae5b",
    ("two_circles", 50, 1000, 1): "b42d30381e8bba01",
    ("digits", 50, 50, 0): "f441cf603becabf4",
    ("digits", 100, 100, 2): "cf25903617393ac2",
    ("digits", 20, 0, 3): "03054760d87eba93",
}


@pytest.mark.parametrize("key", sorted(HASHES_BEFORE), ids=str)
def test_classification_split_hashes_are_unchanged(key):
    from datasets import load, split_for

    name, n_labels, n_val, seed = key
    d = load(name)
    assert make_split(name, d.y_train, d.info.num_classes, n_labels, n_val, seed).split_hash == HASHES_BEFORE[key]
    assert split_for(d.info, d.y_train, n_labels, n_val, seed).split_hash == HASHES_BEFORE[key]


def test_classification_hash_of_a_cifar_sized_pool_is_unchanged():
    y = np.random.default_rng(0).integers(0, 10, 5000)
    assert make_split("cifar10", y, 10, 40, 40, 0).split_hash == "6c7639eb09795a61"
    assert make_split("cifar10", y, 10, 40, 40, 1).split_hash == "555e8cc6c2e4443b"


# ---- regression: "n labeled images" -------------------------------------------------------------

REG = DatasetInfo("reg", 0, (1, 8, 8), True, (), 30, "regression pool", task="regression", target_dim=10, pool_size=200)


def _reg_split(seed=0, n_labels=20, n_val=20, n=200, name="reg"):
    from datasets import make_regression_split

    return make_regression_split(name, n, n_labels, n_val, seed)


def test_regression_split_sizes_disjoint_covering():
    s = _reg_split(n_labels=13, n_val=7)
    assert (len(s.labeled), len(s.val), len(s.unlabeled)) == (13, 7, 180)
    parts = [s.labeled, s.val, s.unlabeled]
    for p in parts:
        assert p.dtype == np.int64 and np.all(np.diff(p) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(200))
    with pytest.raises(ValueError):
        s.labeled[0] = 1


def test_regression_split_is_a_function_of_seed_and_name_only():
    from datasets import split_for

    a, b = _reg_split(seed=4), _reg_split(seed=4)
    np.testing.assert_array_equal(a.labeled, b.labeled)
    np.testing.assert_array_equal(a.val, b.val)
    assert a.split_hash == b.split_hash
    assert len({_reg_split(seed=s).split_hash for s in range(5)}) == 5
    assert _reg_split(name="other").split_hash != a.split_hash
    # the targets play no part: any y of the same length gives the same split
    y1 = torch.zeros(200, 10)
    y2 = torch.randn(200, 10)
    assert split_for(REG, y1, 20, 20, 4).split_hash == split_for(REG, y2, 20, 20, 4).split_hash == a.split_hash
    torch.manual_seed(5)
    np.random.seed(5)
    assert _reg_split(seed=4).split_hash == a.split_hash


def test_regression_split_draws_labeled_then_val_from_one_permutation():
    import zlib

    s = _reg_split(seed=2, n_labels=11, n_val=9)
    perm = np.random.default_rng([2, zlib.crc32(b"reg")]).permutation(200)
    np.testing.assert_array_equal(s.labeled, np.sort(perm[:11]))
    np.testing.assert_array_equal(s.val, np.sort(perm[11:20]))
    assert s.split_hash == split_hash("reg", s.labeled, s.val, s.unlabeled)


def test_regression_labels_are_not_class_balanced_or_multiples():
    s = _reg_split(n_labels=7, n_val=3)  # any count is fine: no classes
    assert len(s.labeled) == 7 and len(s.val) == 3


@pytest.mark.parametrize("n_labels, n_val, fragment", [
    (0, 0, "positive"), (-1, 5, "positive"), (5, -1, ">= 0"), (150, 51, "more labels than exist"),
    (150, 50, "no unlabeled"),
])
def test_regression_impossible_requests_raise_one_line(n_labels, n_val, fragment):
    for call in (lambda: validate_request(REG, n_labels, n_val), lambda: _reg_split(n_labels=n_labels, n_val=n_val)):
        with pytest.raises(SplitError) as e:
            call()
        assert fragment in str(e.value) and "\n" not in str(e.value)


def test_regression_validation_sizes():
    assert resolve_n_val(REG, 17) == 17  # as scarce as the labels
    assert resolve_n_val(REG, 17, "paper") == 30
    assert resolve_n_val(get_info("aflw"), 91, "paper") == 1012
    validate_request(get_info("aflw"), 455, 1012)
    validate_request(get_info("synthetic_landmarks"), 100, 100)
    with pytest.raises(SplitError, match="more labels than exist"):
        validate_request(get_info("synthetic_landmarks"), 9_000, 1_001)


def test_regression_holdout_split():
    from datasets import holdout_split

    y = np.random.default_rng(0).normal(size=(40, 10)).astype(np.float32)
    train, hold = holdout_split(y, 0.25, seed=3)
    assert len(hold) == 10 and len(train) == 30 and np.intersect1d(train, hold).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, hold])), np.arange(40))
    again = holdout_split(y, 0.25, seed=3)
    np.testing.assert_array_equal(again[1], hold)
    assert not np.array_equal(holdout_split(y, 0.25, seed=4)[1], hold)
    assert len(holdout_split(y[:2], 0.01, seed=0)[1]) == 1  # at least one held out, one kept
    with pytest.raises(SplitError, match="at least 2"):
        holdout_split(y[:1], 0.5, seed=0)
