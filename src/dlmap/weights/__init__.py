"""Weights: one catalogue of every set dlmap fetches or locates (``catalogue``: which sets
each backbone loads), folder sets (``folders``), URL-fetched file sets (``downloads``), and the
cache folder with its sha256 manifest (``cache``)."""
