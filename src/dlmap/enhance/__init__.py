"""MAP estimation in the latents (Alg. 1): the solver, the fidelity term (Eq. 20),
enhancement records and the enhancement job shared by the CLI and the workflow."""
