"""The served catalogue while the shop runs: items added without retraining, items out of sale,
and a new bundle swapped in, all without a request waiting or failing.

What is served is one frozen `Serving` (a `Recommender` and its batcher) held by `Served`; a
request reads ``served.current`` once. Every change builds a new one and replaces it:

- an added item (`LiveCatalogue.add`) is encoded with the bundle's fitted featurizer (text,
  categories, price, image) and fused by the bundle's own item network; the model is extended
  by that item (`extend_bundle`): its item vectors, a zero ID vector, and the content-affinity
  neighbour lists updated for the new rows only (`extended_graph`), never recomputed for the
  whole catalogue. The new `Recommender` runs the eager model (quick to build) and is swapped in
  before the request returns; a background thread then builds the configured runtime (ONNX) of
  the same catalogue and swaps again when it is ready, unless the catalogue changed meanwhile.
- an item marked sold out (`LiveCatalogue.set_available`) joins `Recommender.unavailable`, which
  every ranking excludes.
- a reload (`reload_served`) loads another bundle beside the served one, re-adds the stored
  items it does not know with its own encoders, and swaps.

Changes are serialised by one lock and persisted in the `Store` (fields, image bytes,
availability), so a restart re-adds them (`LiveCatalogue.__init__`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from seqrec.bundle import FEATURE_NAMES, Bundle, bundle_featurizer, load_bundle
from seqrec.config import ModelConfig
from seqrec.features.build import ItemFeaturizer, encode_new_items
from seqrec.features.item_features import ItemFeatures
from seqrec.models.affinity import modality_content
from seqrec.models.recommender import SequenceRecommender, build_model
from seqrec.neighbours import ordered
from seqrec.serve.batching import MicroBatcher
from seqrec.serve.recommender import Recommender
from seqrec.serve.retrieval import Retrieval
from seqrec.serve.schemas import ServeConfig, ranks_in_thread
from seqrec.serve.store import Store

log = logging.getLogger(__name__)
QUICK_RUNTIME = "eager"  # what a changed catalogue is served with until its fast runtime is ready


@dataclass(frozen=True)
class Serving:
    """What one request is answered with: a recommender and the batcher that runs it."""

    recommender: Recommender
    batcher: MicroBatcher


class Served:
    """The app's current `Serving`. A request reads ``current`` once and answers with it, so
    replacing it (one reference assignment) swaps what later requests see atomically."""

    def __init__(self, current: Serving):
        self.current = current


class ItemConflict(ValueError):
    """An item id the service already knows (answered 409)."""


@dataclass(frozen=True)
class NewItem:
    """An item to add: its item-file fields and, optionally, its image file."""

    item_id: str
    fields: dict[str, Any]
    image_path: str | None = None


# --- the model and features extended by new items -----------------------------------------------


def extended_graph(
    items: np.ndarray, sims: np.ndarray, content, n_old: int, neighbours: int
) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour graph of ``content`` (unit rows [N, F], the last N - n_old new) from the
    graph of its first ``n_old`` rows (items, sims [n_old, K]): the new rows compared with
    every item, the old rows' lists merged with their similarity to the new items."""
    n_items = content.shape[0]
    count = min(neighbours, n_items)
    new = content[n_old:]
    new_sims = new @ content.T  # [M, N]
    old_to_new = content[:n_old] @ new.T  # [n_old, M]
    if sp.issparse(new_sims):
        new_sims, old_to_new = new_sims.toarray(), old_to_new.toarray()
    new_sims = np.asarray(new_sims, dtype=np.float32)
    top = np.argpartition(-new_sims, count - 1, axis=1)[:, :count]  # [M, K] unordered
    new_items, new_top = ordered(top, np.take_along_axis(new_sims, top, axis=1))
    old_to_new = np.asarray(old_to_new, dtype=np.float32)
    # only rows where a new item beats the last kept neighbour change (ties go to the lower,
    # older index); all of them when the lists grow (a catalogue smaller than ``neighbours``)
    rows = np.arange(n_old)
    if items.shape[1] == count:
        rows = np.flatnonzero((old_to_new > sims[:, -1:]).any(axis=1))
    added = np.broadcast_to(np.arange(n_old, n_items), (len(rows), n_items - n_old))  # [R, M]
    pool_items = np.concatenate([items[rows], added], axis=1)  # [R, K + M]
    pool_sims = np.concatenate([sims[rows], old_to_new[rows]], axis=1)
    keep = np.argpartition(-pool_sims, count - 1, axis=1)[:, :count]
    old_items = np.empty((n_old, count), dtype=items.dtype)
    old_top = np.empty((n_old, count), dtype=np.float32)
    if items.shape[1] == count:
        old_items[:], old_top[:] = items, sims
    old_items[rows], old_top[rows] = ordered(
        np.take_along_axis(pool_items, keep, axis=1), np.take_along_axis(pool_sims, keep, axis=1)
    )
    return np.concatenate([old_items, new_items]), np.concatenate([old_top, new_top])


def extended_model(
    model: SequenceRecommender, config: ModelConfig, features: ItemFeatures, n_old: int
) -> SequenceRecommender:
    """``model`` (over the first ``n_old`` items of ``features``) over all of them: the same
    weights, zero ID vectors for the new items, the affinity graph extended (`extended_graph`)."""
    n_items = features.n_items
    out = build_model(dataclasses.replace(config, content_affinity=False), features, n_items)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("affinity.")}
    for key, value in state.items():
        if key.endswith("id_embedding.weight"):
            state[key] = torch.cat([value, value.new_zeros(n_items - n_old, value.shape[1])])
    out.load_state_dict(state)
    out.config = config
    if model.affinity is not None:
        affinity = copy.copy(model.affinity)  # same parameters, buffers replaced below
        affinity._buffers = dict(model.affinity._buffers)
        for name in affinity.modalities:
            items, sims = extended_graph(
                getattr(model.affinity, f"neighbours_{name}").numpy(),
                getattr(model.affinity, f"similarity_{name}").numpy(),
                modality_content(features, name),
                n_old,
                config.affinity_neighbours,
            )
            setattr(affinity, f"neighbours_{name}", torch.from_numpy(items))  # [N, K]
            setattr(affinity, f"similarity_{name}", torch.from_numpy(sims))  # [N, K]
        out.affinity = affinity
    return out.eval()


def joined_features(old: ItemFeatures, new: ItemFeatures) -> ItemFeatures:
    """The rows of ``old`` then those of ``new`` (encoded by the same featurizer)."""
    parts: dict[str, Any] = {}
    for name in FEATURE_NAMES:
        before, after = getattr(old, name), getattr(new, name)
        if before is not None:
            parts[name] = torch.cat([before, after.to(before.dtype)])
    terms = None
    if old.text_terms is not None and new.text_terms is not None:
        terms = sp.vstack([old.text_terms, new.text_terms]).tocsr()
    return ItemFeatures(
        **parts, category_cardinalities=list(old.category_cardinalities), text_terms=terms
    )


def display_rows(bundle: Bundle, added: list[NewItem], title_column: str | None) -> pd.DataFrame:
    """Rows of the bundle's items table (`seqrec.bundle.display_items`) for ``added``."""
    rows = []
    for item in added:
        fields = item.fields
        title = fields.get("title")
        if title in (None, "") and title_column is not None:
            title = fields.get(title_column)
        row = {column: fields.get(column) for column in bundle.items.columns}
        price = pd.to_numeric(pd.Series([fields.get("price")]), errors="coerce").iloc[0]
        row.update(
            item_id=item.item_id,
            title=str(title if title not in (None, "") else item.item_id),
            price=float(price),
            image_path=item.image_path,
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=bundle.items.columns)


def encoding_frame(featurizer: ItemFeaturizer, added: list[NewItem]) -> pd.DataFrame:
    """The featurizer's columns for ``added`` (None where a field is not given)."""
    columns = [
        *featurizer.text_columns,
        *featurizer.category_columns,
        *featurizer.numeric_columns,
    ]
    rows = [{column: item.fields.get(column) for column in columns} for item in added]
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(columns)))
    if featurizer.image_column:
        frame[featurizer.image_column] = [item.image_path for item in added]
    return frame


def title_column(bundle: Bundle) -> str | None:
    """The item-file column the bundle's titles come from (the first text column equal to
    them), or None."""
    head = bundle.items.head(200)
    for column in bundle.items.columns[4:]:
        if head[column].astype(str).equals(head["title"].astype(str)):
            return str(column)
    return None


def extend_bundle(
    bundle: Bundle, added: list[NewItem], featurizer: ItemFeaturizer, title: str | None
) -> Bundle:
    """``bundle`` as if trained with ``added`` at the end of its catalogue, which nobody has
    bought: each encoded by ``featurizer`` and ranked from its content alone."""
    if not added:
        return bundle
    n_old = bundle.n_items
    frame = encoding_frame(featurizer, added)
    new = encode_new_items(frame, featurizer, cache_dir=False).features  # new images: no lookup
    features = joined_features(bundle.features, new)
    model = extended_model(bundle.model, bundle.config.model, features, n_old)
    new_idx = torch.arange(n_old, features.n_items)
    with torch.no_grad():
        net = model.output_item_net or model.item_net
        item_matrix = torch.cat([bundle.item_matrix, net(new_idx).float()])  # [N, D]
    items = pd.concat([bundle.items, display_rows(bundle, added, title)], ignore_index=True)
    ranker = bundle.ranker
    if ranker is not None:
        extra = pd.DataFrame([item.fields for item in added], columns=ranker.items.columns)
        ranker = dataclasses.replace(
            ranker, items=pd.concat([ranker.items, extra], ignore_index=True)
        )
    return dataclasses.replace(
        bundle,
        items=items,
        features=features,
        model=model,
        item_matrix=item_matrix,
        popularity=np.concatenate([bundle.popularity, np.zeros(len(added), np.float32)]),
        ranker=ranker,
        _ranker_scorer=None,
    )


# --- the catalogue while serving -----------------------------------------------------------------


def save_image(folder: Path, image: bytes | None, suffix: str | None) -> str | None:
    """Write ``image`` in ``folder`` under a new name; its path (None without an image)."""
    if image is None:
        return None
    path = folder / f"{uuid.uuid4().hex}{suffix or '.img'}"
    path.write_bytes(image)
    return str(path)


class LiveCatalogue:
    """The served bundle plus the items added to it, and the items out of sale (see the
    module doc). ``served`` is what the routes answer with."""

    def __init__(self, bundle: Bundle, store: Store, config: ServeConfig):
        self.store, self.config = store, config
        self.lock = threading.Lock()  # one catalogue change at a time
        self.exporting = threading.Lock()  # one fast runtime built at a time
        self.generation = 0  # counts changes: a background build of an older one is dropped
        self.images = tempfile.TemporaryDirectory(prefix="seqrec-items-")
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqrec-runtime")
        self.first_batcher: MicroBatcher | None = None
        self.items_version = store.items_version()  # what this catalogue has taken in
        self.bundle = self.with_stored_items(bundle)
        self.served = Served(self.serving(self.bundle, config.runtime))
        self.stopped = threading.Event()
        if config.sync_seconds:  # servers sharing the database see each other's items
            threading.Thread(target=self.watch, name="seqrec-sync", daemon=True).start()

    # --- building what is served

    def with_stored_items(self, bundle: Bundle) -> Bundle:
        """``bundle`` extended by the stored items it does not know (encoded with its own
        featurizer); sets what new items are encoded with."""
        self.root = bundle
        self.featurizer: ItemFeaturizer | None = None
        self.title = title_column(bundle)
        index = bundle.item_index()
        stored = [s for s in self.store.stored_items() if s.fields is not None]
        added = [s for s in stored if s.item_id not in index]
        if not added:
            return bundle
        folder = Path(self.images.name)
        items = [
            NewItem(s.item_id, s.fields or {}, save_image(folder, s.image, s.image_suffix))
            for s in added
        ]
        log.info("re-adding %d stored items to %s", len(items), bundle.path.name)
        return extend_bundle(bundle, items, self.encoder(), self.title)

    def encoder(self) -> ItemFeaturizer:
        if self.featurizer is None:
            self.featurizer = bundle_featurizer(self.root)
        return self.featurizer

    def mark_sold_out(self, rec: Recommender) -> None:
        """Set ``rec.unavailable``: [U] its indices of the items the database says are out of
        sale."""
        ids = self.store.unavailable_ids()
        rec.unavailable = np.array(
            sorted(rec.index[i] for i in ids if i in rec.index), dtype=np.int64
        )

    def serving(self, bundle: Bundle, runtime: str, base: Recommender | None = None) -> Serving:
        """A `Serving` of ``bundle`` scored by ``runtime``, its sold-out items excluded."""
        config = self.config
        retrieval = Retrieval(
            config.retrieval, config.retrieval_candidates, config.retrieval_nprobe
        )
        if runtime == QUICK_RUNTIME:
            rec = Recommender(bundle, runtime, base, retrieval, config.compile_trees)
        else:
            with self.exporting:  # torch's ONNX export is not thread-safe
                rec = Recommender(bundle, runtime, base, retrieval, config.compile_trees)
        self.mark_sold_out(rec)
        if self.first_batcher is None:
            batcher = self.first_batcher = MicroBatcher(
                rec.rank, config.max_batch, config.batch_wait_ms / 1000, ranks_in_thread(config)
            )
        else:  # the same ranking thread and counts, however often what is served changes
            batcher = self.first_batcher.successor(rec.rank)
        if config.warmup:
            rec.warm_up()
        return Serving(rec, batcher)

    def swap(self, bundle: Bundle, serving: Serving) -> None:
        """Serve ``serving`` from now on (under the lock), and its fast runtime when ready."""
        self.bundle, self.served.current = bundle, serving
        self.generation += 1
        if serving.recommender.runtime != self.config.runtime and self.config.runtime != "eager":
            self.background.submit(self.faster, self.generation, bundle, serving.recommender)

    def faster(self, generation: int, bundle: Bundle, base: Recommender) -> None:
        """Swap in ``bundle`` served by the configured runtime, unless it changed meanwhile."""
        if generation != self.generation:
            return
        try:
            serving = self.serving(bundle, self.config.runtime, base)
        except Exception:  # the eager runtime keeps serving
            log.exception("the %s runtime of the changed catalogue failed", self.config.runtime)
            return
        with self.lock:
            if generation == self.generation:
                serving.recommender.unavailable = self.served.current.recommender.unavailable
                self.served.current = serving

    # --- changes

    def add(self, item: NewItem, image: bytes | None, suffix: str | None) -> Recommender:
        """Add ``item`` (its image file written already, ``image`` its bytes): served and stored
        when this returns; ItemConflict for an id already known; nothing changed on error."""
        with self.lock:
            current = self.served.current.recommender
            if item.item_id in current.index:
                raise ItemConflict(f"item {item.item_id!r} exists already")
            bundle = extend_bundle(self.bundle, [item], self.encoder(), self.title)
            serving = self.serving(bundle, QUICK_RUNTIME, base=current)
            self.store.add_item(item.item_id, item.fields, image, suffix)
            self.swap(bundle, serving)
            return serving.recommender

    def set_available(self, item_id: str, available: bool) -> bool:
        """Mark ``item_id`` in sale or sold out (stored); False when the id is unknown."""
        with self.lock:
            rec = self.served.current.recommender
            if item_id not in rec.index:
                return False
            self.store.set_available(item_id, available, create=True)
            self.mark_sold_out(rec)
            return True

    def sync(self) -> int:
        """Take in the item changes of other servers sharing the database (or workers of this
        one): items added there, encoded here with the bundle's own featurizer, and items
        taken out of sale or back. The number of items added."""
        version = self.store.items_version()
        if version == self.items_version:
            return 0
        with self.lock:
            self.items_version = version
            current = self.served.current.recommender
            stored = [s for s in self.store.stored_items() if s.fields is not None]
            added = [s for s in stored if s.item_id not in current.index]
            if added:
                folder = self.image_folder()
                items = [
                    NewItem(s.item_id, s.fields or {}, save_image(folder, s.image, s.image_suffix))
                    for s in added
                ]
                bundle = extend_bundle(self.bundle, items, self.encoder(), self.title)
                serving = self.serving(bundle, QUICK_RUNTIME, base=current)
                self.swap(bundle, serving)
            else:
                self.mark_sold_out(current)
            return len(added)

    def watch(self) -> None:
        """`sync` every ``sync_seconds`` until closed (a failed sync is logged, then retried)."""
        while not self.stopped.wait(self.config.sync_seconds):
            try:
                self.sync()
            except Exception:
                log.exception("taking in the items changed by other servers failed")

    def reload(self, path: str | Path) -> Recommender:
        """Serve the bundle at ``path`` (loaded beside the served one) with the stored items;
        DataError (the served bundle unchanged) when it cannot be loaded."""
        loaded = load_bundle(path)
        with self.lock:
            root, featurizer, title = self.root, self.featurizer, self.title
            try:
                bundle = self.with_stored_items(loaded)
                serving = self.serving(bundle, self.config.runtime)
            except Exception:
                self.root, self.featurizer, self.title = root, featurizer, title
                raise
            self.swap(bundle, serving)
            return serving.recommender

    def image_folder(self) -> Path:
        return Path(self.images.name)

    def close(self) -> None:
        self.stopped.set()
        self.background.shutdown(wait=False, cancel_futures=True)
        self.images.cleanup()


def reload_served(app: Any, path: str | Path | None = None) -> Recommender:
    """Reload the app's bundle from ``path`` (default: the one it serves), e.g. on SIGHUP."""
    catalogue: LiveCatalogue = app.state.catalogue
    return catalogue.reload(catalogue.root.path if path is None else path)
