"""Where and how torch computes: the device a ``train.device`` value names, and torch's
deterministic kernels (``train.deterministic``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from seqrec.constraints import ConfigError


def device_unavailable(name: str) -> str | None:
    """Why this machine cannot train on device ``name`` (None when it can)."""
    kind, _, index = name.partition(":")
    if kind == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine; use cpu or auto"
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    mps = getattr(torch.backends, "mps", None)
    if kind == "mps" and not (mps and mps.is_available()):
        return "MPS (Apple GPU) is not available on this machine; use cpu or auto"
    return None


def pick_device(name: str) -> torch.device:
    """The torch device of a ``train.device`` value; ConfigError if this machine lacks it."""
    if name != "auto":
        why = device_unavailable(name)
        if why:
            raise ConfigError(f"train.device = {name!r}: {why}")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextlib.contextmanager
def deterministic_algorithms(on: bool) -> Iterator[None]:
    """Within: torch's deterministic kernels when ``on`` (several CPU threads otherwise sum
    gradients in a varying order, so two runs of a seed end with weights a few ulps apart,
    and whatever is fitted on their scores, a ranker's trees, can differ far more)."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(on or before, warn_only=True if on else warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)
