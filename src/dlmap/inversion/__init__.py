"""Exact inversion of the sampler (Eqs. 6-15): EDICT (``edict.py``), BDIA and O-BELM
(``bijections.py``), their settings (``config.py``), and the one memory-lean autograd rule
that runs any of them (``reversible.py``)."""
