"""Item content features: text, image, categories, numeric, fused into one vector per item.

Start at `seqrec.features.build` (`fit_item_features`), which calls the text and image encoders
and the cache; `fusion` combines the modalities inside the model's item network.
"""
