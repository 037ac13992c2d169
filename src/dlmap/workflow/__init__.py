"""The workflow's plumbing, apart from the method: what the Snakemake workflow makes from a
configuration (``plan``: ablation variants, MS-LIQE's chain of jobs, the paper's phases and
the hand-made inputs they wait for) and ``dlmap doctor``'s checks of a machine against it."""
