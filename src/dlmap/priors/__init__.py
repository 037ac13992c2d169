"""NR-IQA models as priors: the registry and Prior base, pyiqa's models, NIQE,
calibration to a common scale (Eq. 21) and agreement with MOS (SRCC, PLCC)."""
