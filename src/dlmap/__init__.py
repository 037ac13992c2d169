"""dlmap: NR-IQA models as image priors, by MAP estimation in diffusion latents (EDICT)."""

__version__ = "0.2.0"

import logging as _logging

# bitsandbytes, which pyiqa installs and dlmap never uses, is imported by diffusers and
# transformers when present; on CPUs with AVX512-BF16 it logs a warning at import that an
# optional kernel package is missing. Keep it off our users' stderr.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)
