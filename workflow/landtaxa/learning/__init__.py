"""The encoders and how they learn: networks and their registry, triplets, training and refinement,
and the per-date embeddings with their chunked store."""
