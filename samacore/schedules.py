"""Per-iteration learning-rate multipliers for ``torch.optim.lr_scheduler.LambdaLR``."""
from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(warmup_iters: int, max_iters: int) -> Callable[[int], float]:
    """VQA recipe: linear warm-up ``it / warmup`` then ``0.5 * (1 + cos(pi * (it - warmup) / max_iters))``.

    As in the original, the cosine runs over ``max_iters`` = the *total* number of iterations, so it never
    quite reaches zero at the end of training.
    """
    max_iters = max(1, max_iters)

    def fn(it: int) -> float:
        if it <= warmup_iters:
            return it / warmup_iters if warmup_iters > 0 else 1.0
        return 0.5 * (1 + math.cos(math.pi * (it - warmup_iters) / max_iters))

    return fn


def warmup_constant(warmup_iters: int, floor: float = 1e-2) -> Callable[[int], float]:
    """IQA recipe: ``max(floor, it / warmup)`` during warm-up, then constant 1."""
    warmup_iters = max(1, warmup_iters)

    def fn(it: int) -> float:
        return max(floor, it / warmup_iters) if it <= warmup_iters else 1.0

    return fn
