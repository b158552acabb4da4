"""The split protocol of SAMA / FAST-VQA finetuning and the IQA databases: random 80/20 train/test splits.

Split ``s`` shuffles with ``random.Random(s * 123)`` and trains on the first 80% (``int(0.8 * n)`` items).
Grouped splits (chosen by an option, e.g. the IQA ``data.split_by: reference`` for KADID-10k) shuffle the groups
instead: the first ``int(0.2 * G)`` groups are tested, and every item follows its group, so no reference image
is on both sides.
"""
from __future__ import annotations

import random
from typing import List, Optional, Sequence, Tuple

__all__ = ["make_splits", "random_split"]

Split = Tuple[List[int], List[int]]


def random_split(n: int, split: int, groups: Optional[Sequence[str]] = None, train_ratio: float = 0.8) -> Split:
    """``(train, test)`` item indices of split ``split``: in the shuffled order without ``groups`` (as the VQA
    finetuning uses them), in index order with them."""
    if groups is None:
        order = list(range(n))
        random.Random(split * 123).shuffle(order)
        cut = int(train_ratio * n)
        return order[:cut], order[cut:]
    if len(groups) != n:
        raise ValueError(f"random_split: {len(groups)} group ids for {n} items")
    uniq = list(dict.fromkeys(groups))  # in order of first appearance
    gid = {g: i for i, g in enumerate(uniq)}
    order = list(range(len(uniq)))
    random.Random(split * 123).shuffle(order)
    test_groups = set(order[: int(round(1.0 - train_ratio, 12) * len(uniq))])
    train = [i for i in range(n) if gid[groups[i]] not in test_groups]
    test = [i for i in range(n) if gid[groups[i]] in test_groups]
    return train, test


def make_splits(n: int, num_splits: int, groups: Optional[Sequence[str]] = None,
                train_ratio: float = 0.8) -> List[Split]:
    """Splits ``0 .. num_splits - 1`` of :func:`random_split`, each side sorted (as the IQA trainer records them)."""
    return [tuple(sorted(side) for side in random_split(n, s, groups, train_ratio)) for s in range(num_splits)]
