"""seqrec: multimodal sequential recommender."""
