"""Config overlays shared by the end-to-end tests."""

# The demo shrunk to run the whole DAG in about a minute: 10 x 10 tiles, 4 dates, small encoder.
TINY = """
demo: {size: 160, n_dates: 4}
n_clusters: 5
encoder: {z_dim: 32}
train: {triplets: 300, epochs: 2}
refine: {triplets: 200, epochs: 1}
"""
