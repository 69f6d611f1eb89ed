"""What the server runs to score: histories seq [B, L] -> final scores of every item [B, N].

`Bundle.scorer()`, which ``seqrec eval`` ranks with, runs the eager model and rebuilds the input
item matrix on every call. The server builds its matrices once (`ServedScores`: the input item
table, and the scored item matrix stored [D, N] so that one history reads it in memory order)
and may run a faster copy of the same function, kept only if it agrees with the eager one on
probe batches of several sizes and history lengths:

- ``"torchscript"``: traced and frozen (fewer, fused ops). Kept only when its scores are
  bit-identical to the eager ones.
- ``"onnx"``: exported to ONNX and run with ONNX Runtime: one call for the whole graph, far less
  overhead per operation than eager torch, and a GRU that is one fused loop (several times
  faster than torch's for a lone history). It rounds differently: kept when its scores are within
  `ONNX_TOLERANCE` of the eager ones (relative to their largest magnitude), so a served score may
  differ from ``seqrec eval``'s in the last digits.
- ``"eager"``: the model itself.

``"auto"`` (the default) takes the first of onnx, torchscript and eager that passes.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from seqrec.data.sequences import histories_to_tensor
from seqrec.onnx_export import export_onnx, onnx_session

RUNTIMES = ("auto", "onnx", "torchscript", "eager")
ONNX_TOLERANCE = 1e-5
logger = logging.getLogger(__name__)


class ServedScores(torch.nn.Module):
    """Final scores of every item after each history [B, N], the item matrices held constant:
    `SequenceRecommender.recommend_scores` with the matrices computed once."""

    def __init__(self, model, input_items: torch.Tensor, item_matrix: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("padded_items", model.with_padding_row(input_items))  # [N + 1, D]
        self.register_buffer("item_matrix_t", item_matrix.T.contiguous())  # [D, N]

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        hidden = self.model.encode(seq, self.padded_items)[:, -1]  # [B, D]
        scores = hidden @ self.item_matrix_t  # [B, N], model.score's dot products
        return self.model.finish_scores(scores, seq)  # [B, N]


def probe_batches(max_len: int, n_items: int) -> list[torch.Tensor]:
    """Histories [B, max_len] of 1, 3 and 5 rows: full, short, over-long and of two items."""
    rng = np.random.default_rng(0)
    return [
        histories_to_tensor([rng.integers(0, n_items, n) for n in lengths], max_len)
        for lengths in ([max_len], [1, max_len // 2 + 1, max_len + 3], [2] * 5)
    ]


class TorchScores:
    """A torch module (eager, or traced and frozen) called as seq [B, L] -> numpy [B, N]."""

    def __init__(self, module):
        self.module = module

    def __call__(self, seq: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self.module(seq).float().numpy()


def torchscript_scores(scores: ServedScores, probes: list[torch.Tensor]) -> TorchScores | None:
    """``scores`` traced and frozen, or None unless bit-identical on ``probes``."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.freeze(torch.jit.trace(scores.eval(), probes[1]))
        if all(torch.equal(frozen(seq), scores(seq)) for seq in probes):
            return TorchScores(frozen)
    logger.info("the traced scores differ from the eager ones")
    return None


class OnnxScores:
    """``scores`` exported to ONNX (batch size dynamic), run with ONNX Runtime."""

    def __init__(self, scores: ServedScores, example: torch.Tensor, threads: int = 1):
        self.session = onnx_session(export_onnx(scores, example, "seq", "scores"), threads)

    def __call__(self, seq: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"seq": seq.numpy()})[0]  # [B, N] float32


def onnx_scores(scores: ServedScores, probes: list[torch.Tensor], threads: int = 1):
    """`OnnxScores` of ``scores``, or None unless within `ONNX_TOLERANCE` on ``probes``."""
    session = OnnxScores(scores, probes[1], threads)
    with torch.inference_mode():
        for seq in probes:
            expected = scores(seq).numpy()
            scale = max(1.0, float(np.abs(expected).max()))
            if np.abs(session(seq) - expected).max() > ONNX_TOLERANCE * scale:
                logger.info("the ONNX scores differ from the eager ones beyond the tolerance")
                return None
    return session


def fast_scores(scores: ServedScores, max_len: int, n_items: int, runtime: str = "auto"):
    """(callable seq [B, max_len] -> numpy [B, N], the runtime that runs it): the first of
    ``runtime``'s candidates (onnx, then torchscript, for ``"auto"``) that passes its check on
    probe batches, else the eager module."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    candidates = {"auto": ("onnx", "torchscript"), "eager": ()}.get(runtime, (runtime,))
    probes = probe_batches(max_len, n_items)
    builders = {
        "onnx": lambda: onnx_scores(scores, probes, torch.get_num_threads()),
        "torchscript": lambda: torchscript_scores(scores, probes),
    }
    for name in candidates:
        try:  # a faster runtime is an optimisation: on any failure, serve the eager module
            fast = builders[name]()
        except Exception as error:
            logger.warning("the %s runtime failed to build (%s)", name, error)
            fast = None
        if fast is not None:
            return fast, name
    if candidates:
        logger.warning("serving the eager model: no faster runtime matches it (asked: %s)", runtime)
    return TorchScores(scores.eval()), "eager"
