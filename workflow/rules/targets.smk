# Helpers: what each target asks for. The default (`all`, the same as phase `results`) and
# the paper's five phases (the rules in the Snakefile; dlmap.workflow.plan names them and the
# steps done by hand between them).


def all_targets():
    targets = [f"{OUT}/report/ranking-{c}.md" for c in config["comparisons"]]
    targets += [f"{OUT}/report/table1.md", f"{OUT}/report/figures.done"]
    targets += [f"{OUT}/experiment/{c}.sqlite" for c in config["comparisons"]]
    return targets


def prepare_targets():
    """Phase `prepare`: weights and data sets in place, MS-LIQE trained, Eq. 21 constants
    fitted, every prior's SRCC on the evaluation set, the test images prepared."""
    files = [f for name in weight_sets() for f in weight_files(name)]
    backbones = [config["backbone"], config["ablations"]["vanilla_backbone"]]
    files += sorted({f for b in backbones for f in backbone_weights(b)})
    files += [f"{OUT}/calibration/{p}.json" for p in config["calibration"]["priors"]]
    files += [f"{OUT}/srcc/{p}.csv" for p in PRIORS]
    files += [msliqe_checkpoint()] if msliqe_checkpoint() else []
    folder = tiny_vae_dir(config["backbone"])
    files += [folder] if folder else []
    return files + all_image_dirs()


def enhance_targets():
    """Phase `enhance`: every prior's MAP chunks, the ablation runs, the external enhancers'
    outputs checked in, and the post-enhancement of their outputs."""
    files = [d for prior in PRIORS for d in enhanced_dirs(prior)]
    files += [f"{OUT}/ablations/{variant}" for variant in ablation_variants()]
    used = {e for c in config["comparisons"] for e in comparison_enhancers(c)}
    used |= set(config["post_enhancement"]["bases"])
    files += [f"{OUT}/external/{name}" for name in EXTERNAL if name in used]
    files += [f"{OUT}/post/{base}" for base in config["post_enhancement"]["bases"]]
    return files


def study_targets():
    """Phase `study`: the pairs of every comparison (Eq. 18), its 2AFC study, and (human
    observers) SERVING.txt with the commands that serve and export each study."""
    files = [f"{OUT}/comparison/{c}/pairs.csv" for c in config["comparisons"]]
    files += [f"{OUT}/experiment/{c}.sqlite" for c in config["comparisons"]]
    if config["observers"]["kind"] == "human":
        files.append(f"{OUT}/experiment/SERVING.txt")
    return files
