"""From pixels to an embedding: the TFLite runtime, model cards, detection, keypoints, alignment, the embedder and the one face path."""
