"""dlmap: NR-IQA models as image priors, by MAP estimation in diffusion latents (EDICT)."""

__version__ = "0.1.0"
