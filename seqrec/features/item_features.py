"""The per-item content tensors that the item network turns into item vectors.

Built by `seqrec.features.build.fit_item_features` from a `Dataset`; consumed by
`seqrec.models.item_net.ItemNet`. Row ``i`` of every tensor is item index ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # scipy is imported where the terms are built, not to read the features
    import scipy.sparse as sp


@dataclass
class ItemFeatures:
    text: torch.Tensor | None = None  # [N, D_text] float32 (TF-IDF/SVD or sentence embedding)
    image: torch.Tensor | None = None  # [N, D_image] float32, zeros where no image
    image_mask: torch.Tensor | None = None  # [N] bool, True where the image was encoded
    categories: torch.Tensor | None = None  # [N, C] int64 codes, 0 = unknown/missing
    category_cardinalities: list[int] = field(default_factory=list)  # per column, incl. code 0
    numeric: torch.Tensor | None = None  # [N, F] float32, log1p then z-scored, 0 where missing
    # [N, V] scipy CSR float32: the TF-IDF term weights behind ``text`` (TF-IDF text only), for
    # exact content similarity (`seqrec.models.affinity`); travels with the text modality
    text_terms: sp.csr_matrix | None = None

    @property
    def n_items(self) -> int:
        for tensor in (self.text, self.image, self.categories, self.numeric):
            if tensor is not None:
                return int(tensor.shape[0])
        raise ValueError("ItemFeatures holds no feature tensor")

    def modalities(self) -> list[str]:
        """Names of the modalities present: a subset of text, image, categories, numeric."""
        names = []
        for name in ("text", "image", "categories", "numeric"):
            if getattr(self, name) is not None:
                names.append(name)
        return names

    def select(self, keep: list[str]) -> ItemFeatures:
        """A copy with only the named modalities (for ablations: text only, image only...)."""
        return ItemFeatures(
            text=self.text if "text" in keep else None,
            image=self.image if "image" in keep else None,
            image_mask=self.image_mask if "image" in keep else None,
            categories=self.categories if "categories" in keep else None,
            category_cardinalities=self.category_cardinalities if "categories" in keep else [],
            numeric=self.numeric if "numeric" in keep else None,
            text_terms=self.text_terms if "text" in keep else None,
        )
