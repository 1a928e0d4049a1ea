"""landtaxa: unsupervised spatio-temporal land taxonomy from satellite image sequences.

The package holds all the logic of the workflow (grid, alignment, encoder, triplets,
embeddings, series, clusters, maps, metrics); the Snakemake rules only call it.
It never imports snakemake, so every step can also be used from a notebook.
"""

__version__ = "0.1.0"
