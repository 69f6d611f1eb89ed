"""What the server scores with: the one `seqrec.scoring.ModelScorer`, its raw scores run fast.

`Bundle.scorer()`, which ``seqrec eval`` ranks with, runs the eager model and rebuilds the input
item matrix on every call. The server builds its matrices once (`ServedScores`: the model's raw
scores of histories seq [B, L] -> [B, N], with the input item table and the scored item matrix,
stored [D, N] so that one history reads it in memory order, held constant) and may run a faster
copy of that graph, kept only if its final scores (the history re-rank, `seqrec.rerank`, applied
after it as everywhere) agree with the eager ones on probe batches of several sizes and history
lengths:

- ``"torchscript"``: traced and frozen (fewer, fused ops). Kept only when its scores are
  bit-identical to the eager ones.
- ``"onnx"``: exported to ONNX and run with ONNX Runtime: one call for the whole graph, far less
  overhead per operation than eager torch, and a GRU that is one fused loop (several times
  faster than torch's for a lone history). It rounds differently: kept when its scores are within
  `ONNX_TOLERANCE` of the eager ones (relative to their largest magnitude), so a served score may
  differ from ``seqrec eval``'s in the last digits.
- ``"eager"``: the model itself.

``"auto"`` (the default) takes the first of onnx, torchscript and eager that passes.
`served_scorer` gives the scorer with the chosen runtime. `ServedHidden`, the hidden states
alone (what `seqrec.serve.retrieval` searches its index with), is run the same way.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from seqrec.data.sequences import histories_to_tensor
from seqrec.onnx_export import export_onnx, onnx_session
from seqrec.rerank import HistoryFirst
from seqrec.scoring import ModelScorer

RUNTIMES = ("auto", "onnx", "torchscript", "eager")
ONNX_TOLERANCE = 1e-5
logger = logging.getLogger(__name__)
Rerank = HistoryFirst | None


class ServedScores(torch.nn.Module):
    """Raw scores of every item after each history [B, N], the item matrices held constant:
    `SequenceRecommender.recommend_scores` with the matrices computed once."""

    def __init__(self, model, input_items: torch.Tensor, item_matrix: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("padded_items", model.with_padding_row(input_items))  # [N + 1, D]
        self.register_buffer("item_matrix_t", item_matrix.T.contiguous())  # [D, N]

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        hidden = self.model.encode(seq, self.padded_items)[:, -1]  # [B, D]
        scores = hidden @ self.item_matrix_t  # [B, N], model.score's dot products
        return self.model.add_history_terms(scores, seq)  # [B, N]


class ServedHidden(torch.nn.Module):
    """The hidden state after each history [B, D], the input item table held constant: what
    `ServedScores` takes dot products of (`seqrec.serve.retrieval` searches an index with it)."""

    def __init__(self, model, input_items: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("padded_items", model.with_padding_row(input_items))  # [N + 1, D]

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.model.encode(seq, self.padded_items)[:, -1]  # [B, D]


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


def torchscript_scores(
    scores: ServedScores | ServedHidden, probes: list[torch.Tensor]
) -> TorchScores | None:
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

    def __init__(self, scores: torch.nn.Module, example: torch.Tensor, threads: int = 1):
        self.session = onnx_session(export_onnx(scores, example, "seq", "scores"), threads)

    def __call__(self, seq: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"seq": seq.numpy()})[0]  # [B, N] float32


def onnx_scores(
    scores: ServedScores | ServedHidden,
    probes: list[torch.Tensor],
    threads: int = 1,
    rerank: Rerank = None,
):
    """`OnnxScores` of ``scores``, or None unless its final scores (``rerank`` applied after
    both) are within `ONNX_TOLERANCE` on ``probes``."""
    session = OnnxScores(scores, probes[1], threads)
    with torch.inference_mode():
        for seq in probes:
            expected = final(scores(seq), seq, rerank)
            scale = max(1.0, float(np.abs(expected).max()))
            if np.abs(final(session(seq), seq, rerank) - expected).max() > ONNX_TOLERANCE * scale:
                logger.info("the ONNX scores differ from the eager ones beyond the tolerance")
                return None
    return session


def final(raw, seq: torch.Tensor, rerank: Rerank) -> np.ndarray:
    """[B, N] float32 final scores: raw scores [B, N] of ``seq`` [B, L] re-ranked."""
    raw = torch.as_tensor(raw)
    return (raw if rerank is None else rerank(raw, seq)).float().numpy()


def fast_scores(
    scores: ServedScores | ServedHidden,
    max_len: int,
    n_items: int,
    runtime: str = "auto",
    rerank: Rerank = None,
):
    """(callable seq [B, max_len] -> numpy [B, N] raw scores, the runtime that runs it): the
    first of ``runtime``'s candidates (onnx, then torchscript, for ``"auto"``) that passes its
    check on probe batches (final scores, ``rerank`` applied), else the eager module."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    candidates = {"auto": ("onnx", "torchscript"), "eager": ()}.get(runtime, (runtime,))
    probes = probe_batches(max_len, n_items)
    builders = {
        "onnx": lambda: onnx_scores(scores, probes, torch.get_num_threads(), rerank),
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


def served_scorer(scorer: ModelScorer, runtime: str = "auto") -> tuple[ModelScorer, str]:
    """(``scorer`` with its raw scores computed by `fast_scores` from item matrices built once,
    the runtime's name). The re-rank is the scorer's own, run after the runtime."""
    model = scorer.model.eval()
    with torch.no_grad():
        served = ServedScores(model, model.input_item_matrix(), scorer.item_matrix())
    fast, name = fast_scores(served, scorer.max_len, model.n_items, runtime, scorer.rerank)
    return scorer.with_raw_scores(fast), name
