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
