"""Weights: the cache folder and its sha256 manifest, the catalogue of downloadable
file sets, and fetching them."""
