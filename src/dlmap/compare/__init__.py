"""Comparing priors by what they produce: distances and pair selection (Eq. 18),
observers, paired-comparison scaling (Eq. 19), significance and reports."""
