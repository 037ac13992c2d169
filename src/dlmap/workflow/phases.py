"""The paper's run as five named targets of the workflow, in order, and the two steps between
them that people do: running the external enhancers on the selected test images, and the
human 2AFC study. The Snakefile, its rules and ``dlmap doctor`` read them here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Phase:
    """A named target of the workflow, in the order a full run takes them."""

    name: str
    does: str
    then: str = ""  # what a person does before the next phase can run


PHASES = (
    Phase(
        "prepare",
        "weights and data sets checked in, MS-LIQE trained, Eq. 21 constants fitted, every "
        "prior's SRCC on SPAQ, the test images selected and prepared",
    ),
    Phase(
        "external_inputs",
        "the selected test images and a manifest for the external enhancers (OUT/external-inputs)",
        then="run each external enhancer on OUT/external-inputs and put its outputs in its "
        "`external:` folder (docs/external.md)",
    ),
    Phase(
        "enhance",
        "every prior's MAP enhancement, the ablations, the external outputs checked in, the "
        "post-enhancement",
    ),
    Phase(
        "study",
        "pair selection (Eq. 18) and one 2AFC study per comparison (OUT/experiment/*.sqlite)",
        then="serve each study to your subjects and export their answers "
        "(OUT/experiment/SERVING.txt says how)",
    ),
    Phase("results", "rankings (Eq. 19), Table I and every figure"),
)


@dataclass(frozen=True)
class HandStep:
    """An input of the run that no rule makes, still missing: which phase it blocks, whose
    it is (an enhancer, a study), what is missing and what to do."""

    phase: str
    name: str
    missing: str
    todo: str


def external_missing(folder: Path, ids: list[str]) -> list[str]:
    """The test ids an external enhancer's folder has no output for."""
    if not folder.is_dir():
        return list(ids)
    found = {p.stem for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    return [i for i in ids if i not in found]


def hand_steps(config: dict, ids: list[str], out: str) -> list[HandStep]:
    """The people's steps the run still waits for: every external enhancer whose folder lacks
    an output for a test image (``enhance`` needs them; folders the workflow makes itself, as
    the demo's, excepted), and every human study with no export (``results`` needs them)."""
    steps = []
    used = set(config.get("post_enhancement", {}).get("bases", []))
    for spec in config["comparisons"].values():
        used |= set(spec["enhancers"])
    for name, template in config.get("external", {}).items():
        folder = template.format(out=out)
        if name not in used or folder.startswith(f"{out}/"):
            continue
        missing = external_missing(Path(folder), ids)
        if missing:
            steps.append(
                HandStep(
                    "enhance",
                    name,
                    f"external enhancer {name}: no output for {len(missing)} of {len(ids)} "
                    f"test images in {folder}",
                    f"run {name} on {out}/external-inputs (after the external_inputs phase) "
                    f"and write {missing[0]}.png ... into {folder} (docs/external.md)",
                )
            )
    if config["observers"]["kind"] == "human":
        exports = config["observers"].get("exports") or {}
        for comparison in config["comparisons"]:
            folder = exports.get(comparison, f"{out}/experiment/{comparison}-export")
            if not (Path(folder) / "counts.csv").is_file():
                steps.append(
                    HandStep(
                        "results",
                        comparison,
                        f"human study {comparison}: no exported answers in {folder}",
                        f"dlmap experiment serve --db {out}/experiment/{comparison}.sqlite, "
                        f"then dlmap experiment export --db {out}/experiment/{comparison}"
                        f".sqlite --out {folder}",
                    )
                )
    return steps


STOPPED = (
    "dlmap: the run stopped before its targets; if a job above says so, a phase waits for a "
    "step done by hand (README: the paper on a SLURM cluster)"
)


def describe_hand_steps(steps: list[HandStep]) -> str:
    """Several lines for a person: each missing input, the phase it blocks, what to do."""
    lines = []
    for phase in PHASES:
        mine = [step for step in steps if step.phase == phase.name]
        if mine:
            lines.append(f"phase `{phase.name}` waits for {len(mine)} step(s) done by hand:")
            lines += [f"  - {step.missing}: {step.todo}" for step in mine]
    return "\n".join(lines)


def summarise_hand_steps(steps: list[HandStep]) -> str:
    """A few lines: which phase waits for what, and the order to run the phases in."""
    lines = []
    for phase in PHASES:
        names = [step.name for step in steps if step.phase == phase.name]
        if names:
            what = "external enhancers' outputs" if phase.name == "enhance" else "human answers"
            names = ", ".join(names)
            lines.append(
                f"dlmap: note: phase `{phase.name}` waits for {what} done by hand: {names}"
            )
    order = ", ".join(phase.name for phase in PHASES)
    lines.append(
        "dlmap: note: targets that need them (the default among them) stop there; run the "
        f"phases in order: {order} (README; `dlmap doctor` lists each step)"
    )
    return "\n".join(lines)
