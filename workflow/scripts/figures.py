"""Rules figure_ablations, figure_pairs, figure_votes and figure_post: the paper's figures
as labelled image grids (dlmap.figures.grids) from the enhanced images and their JSON records."""

import csv
import json
from pathlib import Path

from _job import job

from dlmap.compare.counts import read_counts
from dlmap.figures import charts, grids, plots

smk = job(globals())
reduced = smk.params.stamp["reduced"]


def originals(folders) -> dict[str, Path]:
    folders = [folders] if isinstance(folders, str) else folders
    return {p.stem: p for folder in folders for p in Path(folder).glob("*.png")}


def final(folder: Path, image_id: str, key: str = "raw_score"):
    record = json.loads((folder / f"{image_id}.json").read_text())
    return record["final"]["x"][key], record["history"][0][key] if record["history"] else None


def ablations():
    ids, prior = smk.params.ids, smk.params.prior
    inputs = originals(smk.input.inputs)
    inputs = [inputs[i] for i in ids]
    folder = {Path(p).name: Path(p) for p in smk.input.variants}
    outputs = {Path(p).stem: p for p in smk.output}

    def column(variant):
        return [folder[variant] / f"{i}.x.png" for i in ids]

    def scores(variant):
        return [final(folder[variant], i)[0] for i in ids]

    initial = [final(folder["pixel-map"], i)[1] for i in ids]  # the prior on x_init
    variants = ("pixel-direct", "pixel-map", "latent-map")
    table = list(zip(initial, *(scores(v) for v in variants), strict=True))
    figure = grids.fig1_pixel_vs_latent(
        inputs, *(column(v) for v in variants), scores=table, prior=prior, reduced=reduced
    )
    plots.save_figure(figure, outputs["fig1-pixel-vs-latent"])
    lambdas = {lam: f"pixel-map-lambda{lam:g}" for lam in smk.params.lambdas}
    figure = grids.fig2_lambda_sweep(
        inputs,
        {lam: column(v) for lam, v in lambdas.items()},
        {lam: scores(v) for lam, v in lambdas.items()},
        initial,
        prior=prior,
        reduced=reduced,
    )
    plots.save_figure(figure, outputs["fig2-lambda-sweep"])
    rows = [
        {
            "lambda": lam,
            "image": i,
            "score": final(folder[v], i, "score")[0],
            "fidelity": final(folder[v], i, "fidelity")[0],
        }
        for lam, v in lambdas.items()
        for i in ids
    ]
    record = json.loads((folder[next(iter(lambdas.values()))] / f"{ids[0]}.json").read_text())
    low, high = record.get("score_scale", {"range": [0, 1]})["range"]
    label = f"calibrated score q (Eq. 21, {low:g}-{high:g} scale)"
    figure = charts.lambda_sweep_plot(rows, reduced=reduced, score_label=label)
    plots.save_figure(figure, outputs["fig2-lambda-plot"])
    figure = grids.side_by_side(
        {"vanilla SD2": column("vanilla"), "with ControlNet": column("latent-map")},
        inputs,
        title="Fig. 7: vanilla SD2 vs ControlNet",
        reduced=reduced,
    )
    plots.save_figure(figure, outputs["fig7-vanilla-vs-controlnet"])
    figure = grids.side_by_side(
        {"direct (\u03bb = \u221e)": column("latent-direct"), "MAP (Eq. 17)": column("latent-map")},
        inputs,
        title=f"Fig. 8: direct latent optimisation vs MAP ({prior})",
        reduced=reduced,
    )
    plots.save_figure(figure, outputs["fig8-direct-vs-map"])
    if "fig-bijections" in outputs:
        bijections(ids, inputs, folder, column, prior, outputs["fig-bijections"])


def bijections(ids, inputs, folder, column, prior, output):
    """EDICT (the latent-map variant) beside each one-call bijection, with the mean time of
    one MAP iteration (the records' seconds per image over its iterations) in the label."""
    names = {"EDICT": "latent-map"}
    names |= {
        v.removeprefix("bijection-").upper().replace("BELM", "O-BELM"): v
        for v in folder
        if v.startswith("bijection-")
    }

    def per_iteration(variant):
        times = []
        for i in ids:
            record = json.loads((folder[variant] / f"{i}.json").read_text())
            times.append(record["seconds"] / max(len(record["history"]), 1))
        return sum(times) / len(times)

    columns = {
        f"{name}\n{per_iteration(v):.2f} s / iteration": column(v) for name, v in names.items()
    }
    captions = {
        label: [f"q = {final(folder[v], i, 'score')[0]:.3g}" for i in ids]
        for label, v in zip(columns, names.values(), strict=True)
    }
    figure = grids.side_by_side(
        columns,
        inputs,
        captions=captions,
        title=f"Exact bijections: EDICT vs one network call per step ({prior})",
        reduced=reduced,
    )
    plots.save_figure(figure, output)


def pairs():
    inputs = originals(smk.input.originals)
    with open(smk.input.pairs, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["order"]) <= smk.params.per_pair]
    shown = [{**row, "input": inputs[row["image"]]} for row in rows]
    title = f"Selected pairs (Eq. 18): {smk.wildcards.comparison}"
    plots.save_figure(grids.pair_grid(shown, title=title, reduced=reduced), smk.output[0])


def votes():
    names, counts = read_counts(Path(smk.input.counts))
    rows = charts.vote_shares(counts, names, smk.params.anchor)
    figure = charts.vote_share_plot(rows, smk.params.anchor, reduced=reduced)
    plots.save_figure(figure, smk.output[0])


def post():
    ids, bases = smk.params.ids, smk.params.bases
    inputs = originals(smk.input.inputs)
    base = {
        b: [Path(f) / f"{i}.png" for i in ids] for b, f in zip(bases, smk.input.bases, strict=True)
    }
    refined = {
        b: [Path(f) / f"{i}.x.png" for i in ids]
        for b, f in zip(bases, smk.input.refined, strict=True)
    }
    figure = grids.triplets([inputs[i] for i in ids], base, refined, reduced=reduced)
    plots.save_figure(figure, smk.output[0])


{"ablations": ablations, "pairs": pairs, "votes": votes, "post": post}[smk.params.figure]()
