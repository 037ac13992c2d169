"""The diffusion backbone and its exact inversion: EDICT (Eqs. 9-12), SD2's and
SeeSR's networks, the DAPE/RAM embedder, weight loading, and the tiny twins."""
