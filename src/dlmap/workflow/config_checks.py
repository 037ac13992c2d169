"""The workflow's checks of a config beyond its JSON schema, run by workflow/rules/common.smk
(and ``dlmap doctor``) before any job: what a schema cannot say, and every setting a job will
build accepted by its class, so that a typo fails at once in one line naming the key."""

from __future__ import annotations

import dataclasses
import difflib
import math

from dlmap import settings
from dlmap.errors import InputError
from dlmap.inversion import config as inversion_config
from dlmap.settings import RunSettings, config_key
from dlmap.workflow.budget import GpuCosts

MAX_CHUNKS = 1000  # the workflow names its chunks 000-999 (the Snakefile's chunk wildcard)
_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a finite number",
    "string": "a string",
    "null": "null",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}


#: every allowed-value list of the schema that dlmap.settings owns, by its path in the schema
SCHEMA_ENUMS = {
    "definitions.solver.properties.mode": settings.MODES,
    "definitions.solver.properties.gradient": settings.GRADIENTS,
    "definitions.solver.properties.score_scale": tuple(settings.SCORE_SCALES),
    "properties.edict.properties.order": inversion_config.ORDERS,
    "properties.edict.properties.bijection": inversion_config.BIJECTIONS,
    "properties.edict.properties.ends": inversion_config.ENDS,
    "properties.backbone": settings.BACKBONES,
    "properties.encode": settings.ENCODES,
    "properties.dtype": settings.DTYPES,
    "properties.autocast": settings.AUTOCASTS,
    "properties.memory.properties.weights_dtype": settings.WEIGHTS_DTYPES,
    "properties.selection.properties.d1": settings.D1_METRICS,
    "properties.selection.properties.d2": settings.D2_EMBEDDINGS,
    "properties.ablations.properties.bijections.items": tuple(
        name for name in inversion_config.BIJECTIONS if name != "edict"
    ),
}
#: every schema section that is one settings class, and the keys it must have: the solver's
#: fields, the inversion's flat form (its scheduler is not configurable)
SCHEMA_SECTIONS = {
    "definitions.solver.properties": (
        "SolverConfig",
        tuple(f.name for f in dataclasses.fields(settings.SolverConfig)),
    ),
    "properties.edict.properties": (
        "InversionConfig.FLAT_KEYS",
        tuple(key for key in inversion_config.InversionConfig.FLAT_KEYS if key != "scheduler"),
    ),
}
MEMORY_SWITCHES = ("weights_dtype", "checkpoint_blocks", "vae_slicing")


def schema_disagreements(schema: dict) -> list[str]:
    """Where the workflow's JSON schema disagrees with ``dlmap.settings`` (empty: nowhere).
    The settings own the allowed values and the sections' keys; the schema repeats them for
    ``snakemake.utils.validate`` and editors, and this one function is what keeps the two
    equal: ``check_workflow_config`` refuses to start a run on a disagreement, and the tests
    run it on the shipped schema."""

    def at(path: str):
        node = schema
        for part in path.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node

    found = []
    for path, allowed in SCHEMA_ENUMS.items():
        if tuple(at(path).get("enum", ())) != tuple(allowed):
            found.append(
                f"{path}: enum {at(path).get('enum')} but dlmap.settings has {list(allowed)}"
            )
    for path, (owner, keys) in SCHEMA_SECTIONS.items():
        if set(at(path)) != set(keys):
            found.append(f"{path}: keys {sorted(at(path))} but {owner} has {sorted(keys)}")
    memory = set(at("properties.memory.properties"))
    backbone = {f.name for f in dataclasses.fields(settings.BackboneSettings)}
    if memory != set(MEMORY_SWITCHES) or not memory <= backbone:
        found.append(f"properties.memory.properties: keys {sorted(memory)}, not {MEMORY_SWITCHES}")
    steps = at("properties.edict.properties.steps")
    most = inversion_config.SD2_SCHEDULER["num_train_timesteps"]
    if steps.get("maximum") != most:
        found.append(
            f"properties.edict.properties.steps: maximum {steps.get('maximum')}, not {most}"
        )
    return found


def check_workflow_config(config: dict, schema: dict) -> None:
    """The workflow's checks of a config beyond its JSON schema (``schema``: the loaded
    workflow/schemas/config.schema.yaml, which ``validate_config`` has applied first), run by
    workflow/rules/common.smk (and ``dlmap doctor``) before any job. First, the schema itself
    agrees with ``dlmap.settings`` (``schema_disagreements``). Then: integers written as
    integers (6, not 6.0) and every number finite; at most ``MAX_CHUNKS`` chunks of test
    images; ``external`` folders with no braces but ``{out}``; each comparison's anchor among
    its enhancers; post-enhancement bases among ``external``; ``ranking.bootstrap`` 0 or at
    least 2; data sets that exist; every prior named anywhere, and every comparison's
    enhancer, resolved ("did you mean"); and every GPU job's settings accepted by the function
    its script calls, and the GPU cost constants. Raises ``InputError``, one line:
    "config: KEY: why"."""
    drift = schema_disagreements(schema)
    if drift:
        raise InputError(f"the workflow's schema disagrees with dlmap.settings: {drift[0]}")
    _check_types(config, schema)
    count, size = config["images"]["count"], config["chunk_size"]
    if -(-count // size) > MAX_CHUNKS:
        raise InputError(
            f"config: images.count {count} in chunks of chunk_size {size} makes "
            f"{-(-count // size)} chunks; the workflow numbers at most {MAX_CHUNKS} (000-999): "
            "raise chunk_size"
        )
    for name, folder in config["external"].items():
        try:
            folder.format(out="")
        except (KeyError, IndexError, ValueError, AttributeError, TypeError):
            raise InputError(
                f"config: external.{config_key(name)}: {folder!r}: only {{out}} may stand in "
                "braces (write {{ and }} for a brace itself)"
            ) from None
    for name, comparison in config["comparisons"].items():
        anchor = comparison.get("anchor")
        if anchor is not None and anchor not in comparison["enhancers"]:
            raise InputError(
                f"config: comparisons.{name}.anchor: {anchor!r} is not one of its enhancers "
                f"{comparison['enhancers']}"
            )
    bases = [base for base in config["post_enhancement"]["bases"] if base not in config["external"]]
    if bases:
        raise InputError(
            f"config: post_enhancement.bases: {bases[0]!r} is not an external enhancer (the "
            f"keys of external: {list(config['external'])})"
        )
    if config["ranking"]["bootstrap"] == 1:
        raise InputError("config: ranking.bootstrap: must be 0 (no intervals) or at least 2")
    _check_datasets(config)
    _check_prior_names(config)
    _check_comparisons(config)
    _check_settings(config)


def validate_config(config: dict, schema: dict) -> None:
    """The workflow's JSON schema applied to ``config`` (what ``snakemake.utils.validate``
    does, without its dump of the schema and the config): the most relevant error, in one
    line naming the key, as ``InputError`` (its ``__cause__``: jsonschema's full error)."""
    from jsonschema import exceptions, validators

    validator = validators.validator_for(schema)(schema)
    error = exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    where = ".".join(config_key(part) for part in error.absolute_path) or "(top level)"
    message = " ".join(error.message.split())
    if len(message) > 200:
        message = message[:197] + "..."
    if error.validator == "required" and not error.absolute_path:  # a file of overrides alone?
        message += (
            "; a file of overrides goes after a complete one, which Snakemake merges it into: "
            "--configfile config.yaml YOURS.yaml"
        )
    raise InputError(f"config: {where}: {message}") from error


def _prior_names(config: dict) -> list[tuple[str, str]]:
    """(where in the config, prior name) for every prior the config names."""
    named = [("priors", name) for name in config["priors"]]
    named += [(f"prior_settings.{config_key(name)}", name) for name in config["prior_settings"]]
    named += [("calibration.priors", name) for name in config["calibration"]["priors"]]
    named += [("post_enhancement.prior", config["post_enhancement"]["prior"])]
    named += [("ablations.prior", config["ablations"]["prior"])]
    return named


def _prior_error(name: str) -> str | None:
    """Why ``name`` is no prior (the registry's words, with its "did you mean"), or None,
    without importing torch for a name that resolves: a built-in from its spec, ``pyiqa:NAME``
    from the shipped classification of pyiqa's metrics (the registry's own test for it); any
    other name through the registry, which names the close ones."""
    from dlmap.priors.specs import PAPER_METRICS, PRIOR_SPECS, PYIQA_PREFIX

    if name in PRIOR_SPECS:
        return None
    if name.startswith(PYIQA_PREFIX):
        from dlmap.priors import pyiqa_nr

        metric = name.removeprefix(PYIQA_PREFIX)
        if metric in PAPER_METRICS:
            return None
        try:
            pyiqa_nr.require_usable(metric)
        except InputError as error:
            return str(error)
        return None
    from dlmap.priors import registry

    try:
        registry.prior_factory(name)
    except (InputError, registry.UnknownPriorError) as error:
        return str(error)
    return None


def _check_prior_names(config: dict) -> None:
    """Every prior named anywhere resolves (``_prior_error``): a misspelt ``prior_settings``
    key is refused instead of never applying. (A key of a real prior that this run leaves
    out is kept: its settings wait for it.)"""
    for key, name in _prior_names(config):
        error = _prior_error(name)
        if error is not None:
            raise InputError(f"config: {key}: {error}")


def _check_comparisons(config: dict) -> None:
    """Each comparison's enhancers are external enhancers or priors (any prior: the workflow
    enhances with it for the comparison even when ``priors`` leaves it out); a name that is
    neither gets a "did you mean" over both."""
    from dlmap.priors.specs import PRIOR_SPECS

    for name, comparison in config["comparisons"].items():
        for enhancer in comparison["enhancers"]:
            if enhancer in config["external"]:
                continue
            error = _prior_error(enhancer)
            if error is None:
                continue
            where = f"config: comparisons.{config_key(name)}.enhancers"
            if enhancer.startswith("pyiqa:"):  # the registry's reason names the metric
                raise InputError(f"{where}: {error}")
            close = difflib.get_close_matches(enhancer, [*config["external"], *PRIOR_SPECS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(
                f"{where}: {enhancer!r} is neither a prior nor a key of external{hint}"
            )


def _check_datasets(config: dict) -> None:
    """Every data set named is one ``dlmap.data.sources`` knows, or the demo's synthetic set,
    and each list that a stage reads names one at least."""
    from dlmap.data.sources import spec

    for block, key, needed, why in [
        ("images", "datasets", config["images"]["source"] == "datasets", "images.source"),
        ("calibration", "datasets", config["calibration"]["priors"], "calibration.priors"),
        ("msliqe", "datasets", config["msliqe"]["train"], "msliqe.train"),
    ]:
        if needed and not config[block][key]:
            raise InputError(f"config: {block}.{key}: names no data set, but {why} needs one")

    for block, key in [
        ("images", "datasets"),
        ("calibration", "datasets"),
        ("msliqe", "datasets"),
        ("msliqe", "evaluate_on"),
    ]:
        for name in config[block][key]:
            if name != "synthetic":  # dlmap data synthetic's set (the demo's)
                try:
                    spec(name)
                except InputError as error:
                    raise InputError(f"config: {block}.{key}: {error}") from None


def _check_types(config: dict, schema: dict) -> None:
    """``schema`` again, with integers that are ints (JSON Schema counts 6.0 as one) and
    numbers that are finite (no nan, inf, or int too large for a float)."""
    from jsonschema import exceptions, validators

    def integer(_, value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def number(_, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        try:
            return math.isfinite(value)
        except OverflowError:  # an int past 1.8e308
            return False

    base = validators.validator_for(schema)
    checker = base.TYPE_CHECKER.redefine_many({"integer": integer, "number": number})
    strict = validators.extend(base, type_checker=checker)
    error = exceptions.best_match(strict(schema).iter_errors(config))
    if error is None:
        return
    where = ".".join(config_key(part) for part in error.absolute_path) or "the top level"
    if error.validator == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        names = " or ".join(_TYPE_NAMES.get(name, name) for name in wanted)
        raise InputError(f"config: {where}: {_shown(error.instance)} is not {names}")
    raise InputError(f"config: {where}: {error.message}")


def _shown(value, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python prints
        text = f"an int of about {value.bit_length() * 3 // 10} digits"
    return text if len(text) <= limit else text[:limit] + "..."


def _check_settings(config: dict) -> None:
    """Every setting a job builds from the config, accepted by its class: each prior's run
    (``RunSettings.from_config``, whose errors name the prior's key), then every GPU job's
    settings exactly as its script builds them from its params (``plan``'s, which the
    rules pass; ``RunSettings.from_job_params``, which the scripts call): each prior's and
    the post-enhancement's chunks, the inversions, and each ablation run; and the GPU cost
    constants."""
    from dlmap.workflow import plan

    RunSettings.from_config(config)
    for prior in config["prior_settings"]:
        RunSettings.from_config(config, prior)
    for where, backbone, solver, edict in _job_params(config, plan):
        params = RunSettings.from_config(config, backbone=backbone).backbone.job_params()
        try:
            memory = {k: config["memory"][k] for k in settings.RESULT_NEUTRAL_SWITCHES}
            RunSettings.from_job_params(params, solver, edict, config["size"], memory)
        except InputError as error:
            steps = f" (edict.steps is {edict.get('steps')})" if "steps" in str(error) else ""
            raise InputError(f"config: {where}: {error}{steps}") from None
    try:
        GpuCosts(**config["gpu_costs"])
    except InputError as error:
        raise InputError(f"config: {error}") from None


def _job_params(config: dict, plan) -> list[tuple[str, str, dict, dict]]:
    """(where in the config, backbone, solver, inversion settings) of each kind of GPU job."""
    backbone, edict = config["backbone"], plan.edict_values(config)
    jobs = [("edict (the inversions)", backbone, {}, edict)]
    for key, prior in [
        *((f"priors ({prior})", prior) for prior in config["priors"]),
        ("post_enhancement.prior", config["post_enhancement"]["prior"]),
    ]:
        jobs.append((key, backbone, plan.prior_solver(config, prior), edict))
    for variant, changes in plan.ablation_variants(config).items():
        key = "ablations.bijections" if "bijection" in changes else f"ablations ({variant} run)"
        jobs.append(
            (
                key,
                changes.get("backbone", backbone),
                plan.ablation_solver(config, variant),
                plan.ablation_edict(config, variant),
            )
        )
    return jobs
