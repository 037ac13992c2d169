"""Rule select_pairs: Eq. 18 for one comparison: K images per pair of enhancers (or per
pair with the anchor), D2 on the original test images."""

from pathlib import Path

from _job import job

from dlmap.compare import distances, selection

smk = job(globals())
settings = smk.params.selection
enhancers = {name: getattr(smk.input, f"enhancer_{name}") for name in smk.params.enhancers}
enhancers = {k: [v] if isinstance(v, str) else list(v) for k, v in enhancers.items()}
candidates = selection.find_candidates(enhancers)
originals = {p.stem: p for folder in smk.input.originals for p in Path(folder).glob("*.png")}
candidates.originals = {name: originals[name] for name in candidates.names}
d1 = distances.create_d1(settings["d1"], cache=smk.params.cache, device=smk.params.device)
d2 = distances.create_d2(settings["d2"], cache=smk.params.cache, device=smk.params.device)
tables = selection.distance_tables(candidates, d1, d2, size=settings["size"], progress=False)
rows = selection.select_pairs(tables, settings["k"], settings["gamma"], smk.params.anchor)
record = selection.selection_settings(tables, settings["k"], settings["gamma"], rows)
record.update(anchor=smk.params.anchor, workflow=smk.params.stamp)
selection.write_pairs(rows, record, smk.output.pairs)
print(f"{len(rows)} pairs of {len(enhancers)} enhancers -> {smk.output.pairs}")
