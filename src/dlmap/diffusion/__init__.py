"""The diffusion backbone: SD2's and SeeSR's networks, the DAPE/RAM embedder, weight
loading, and the tiny twins. Its exact inversion lives in ``dlmap.inversion``."""
