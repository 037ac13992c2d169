"""Exact inversion of the diffusion sampler (Eqs. 9-16): EDICT's coupled chain in
``edict.py``, BDIA's and O-BELM's two-step chains in ``bijections.py``, and the one
autograd rule that runs any of them with memory constant in the number of steps in
``reversible.py``."""
