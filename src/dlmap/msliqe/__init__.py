"""MS-LIQE, the paper's own quality model: the multi-scale CLIP model (Eqs. 22-24)
and its pairwise training (Eqs. 25-27)."""
