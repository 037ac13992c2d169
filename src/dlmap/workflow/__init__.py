"""What only the Snakemake workflow needs: its config checks, the budget of each job, chunks,
the job functions, what a run makes (``plan``), the paper's phases and the steps by hand
between them (``phases``), and ``dlmap doctor``'s checks of a machine (``doctor``)."""
