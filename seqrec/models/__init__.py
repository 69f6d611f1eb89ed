"""Models: the item network, the sequence backbones and the recommender that joins them."""

from seqrec.models.gru import GRUEncoder
from seqrec.models.item_net import ItemNet, ItemNetConfig
from seqrec.models.mlp import MLPEncoder
from seqrec.models.recommender import (
    BACKBONES,
    ModelConfig,
    SequenceRecommender,
    build_model,
)
from seqrec.models.transformer import TransformerEncoder

__all__ = [
    "BACKBONES",
    "GRUEncoder",
    "ItemNet",
    "ItemNetConfig",
    "MLPEncoder",
    "ModelConfig",
    "SequenceRecommender",
    "TransformerEncoder",
    "build_model",
]
