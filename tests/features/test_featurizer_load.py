"""A featurizer pickled before a config field existed still loads, with that field's default."""

from seqrec.features.build import FeatureConfig, ItemFeaturizer
from seqrec.features.image_config import ImageConfig


def test_a_featurizer_saved_before_a_new_field_loads_with_its_default(tmp_path):
    featurizer = ItemFeaturizer(config=FeatureConfig())
    del featurizer.config.image.__dict__["finetune"]  # as pickled by a version without it
    del featurizer.__dict__["image_column"]
    path = tmp_path / "featurizer.pkl"
    featurizer.save(path)

    loaded = ItemFeaturizer.load(path)

    assert loaded.config.image.finetune == ImageConfig().finetune
    assert loaded.image_column is None
