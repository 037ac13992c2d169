"""The workflow's plumbing, apart from the method: what the Snakemake workflow makes from a
configuration (``plan``: ablation variants, what a run needs, MS-LIQE's chain of jobs), the
paper's phases and the steps done by hand between them (``phases``), and ``dlmap doctor``'s
checks of a machine against a configuration (``doctor``)."""
