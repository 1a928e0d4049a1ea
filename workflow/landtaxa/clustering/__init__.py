"""From embeddings to a taxonomy: the series of every tile, its clustering and the metrics of it."""
