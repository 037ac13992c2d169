"""Figures: titles and shared plotting helpers, image grids and the paper's plots."""
