"""How every script gets its job: Snakemake's `snakemake` object when run by Snakemake
(saved as LOG.job.json beside the rule's log), or that saved file when run alone:

    python workflow/scripts/NAME.py results/.../logs/RULE/....log.job.json

so a failed job can be rerun outside Snakemake for debugging."""

import contextlib
import json
import logging
import resource
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

# The library of the checkout that holds this workflow comes first, so a job runs the code its
# Snakefile was written for, also in an environment that only holds the dependencies
# (envs/jobs.yaml under --sdm conda, or the container under --sdm apptainer).
_SRC = Path(__file__).resolve().parents[2] / "src"
if (_SRC / "dlmap").is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from dlmap.settings import RESULT_NEUTRAL_SWITCHES  # noqa: E402 (config.yaml's memory block)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


class Files(list):
    """input/output/log: a list with named entries as attributes (like Snakemake's)."""

    def __init__(self, items, names):
        super().__init__(items)
        for name, value in names.items():
            setattr(self, name, value)


def job(namespace: dict):
    """The job (input, output, params, log, wildcards, threads, and the config's memory
    switches that change no result), logging set up to the rule's log file."""
    if "snakemake" in namespace:
        smk = namespace["snakemake"]
        saved = {
            key: {
                "items": _plain(list(getattr(smk, key))),
                "names": _plain(dict(getattr(smk, key).items())),
            }
            for key in ("input", "output", "log")
        }
        saved["params"] = _plain(dict(smk.params.items()))
        saved["wildcards"] = _plain(dict(smk.wildcards.items()))
        saved["threads"] = smk.threads
        # The memory switches that change no result are read from the config, not params:
        # switching them on for a smaller GPU must not rerun finished jobs.
        switches = smk.config.get("memory", {})
        saved["memory"] = {k: switches[k] for k in RESULT_NEUTRAL_SWITCHES if k in switches}
        if smk.log:
            Path(f"{smk.log[0]}.job.json").write_text(json.dumps(saved, indent=1) + "\n")
    elif len(sys.argv) == 2:
        saved = json.loads(Path(sys.argv[1]).read_text())
    else:
        sys.exit("usage: python workflow/scripts/NAME.py LOG.job.json (saved by a Snakemake run)")
    files = {k: Files(saved[k]["items"], saved[k]["names"]) for k in ("input", "output", "log")}
    result = SimpleNamespace(
        **files,
        params=SimpleNamespace(**saved["params"]),
        wildcards=SimpleNamespace(**saved["wildcards"]),
        threads=saved["threads"],
        memory=saved.get("memory", {}),
    )
    if result.log and "snakemake" in namespace:  # everything, tracebacks included, to the log
        stream = open(result.log[0], "a", buffering=1)  # noqa: SIM115 (open for the job's life)
        sys.stdout = sys.stderr = stream
    sys.excepthook = _one_line_for_dlmap_errors
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    _check_inputs(result.input, result.log)
    if "torch" in sys.modules:  # the rule's threads, not every core for every parallel job
        sys.modules["torch"].set_num_threads(max(1, int(result.threads)))
    return result


def _flat(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flat(item)
        else:
            yield item


def _check_inputs(inputs, log) -> None:
    """Verify the job's inputs before it reads them: every input folder that carries a
    SHA256SUMS (``seal_outputs`` wrote it) against its digests, every input file of a format
    ``dlmap.workflow.results_check`` reads (.pt, .png, .json, .csv, .sqlite, ...) by its
    format. A damaged input is named in one line and, when the workflow made it (it lies in
    the job's output folder, beside ``logs/``), removed, so that the next run makes it anew."""
    from dlmap.errors import InputError
    from dlmap.files import manifest_problems
    from dlmap.workflow.results_check import format_problem

    out = _out_folder(log)
    for item in map(Path, _flat(inputs)):
        if item.is_dir():
            problems = manifest_problems(item) or []
        else:
            reason = format_problem(item) if item.is_file() else None
            problems = [(item, f"damaged ({reason})")] if reason else []
        if not problems:
            continue
        path, reason = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        if out is None or out not in item.resolve().parents:
            todo = "replace it, then run the workflow again"
        elif item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
            todo = f"removed {item}: run the workflow again and it makes the folder anew"
        else:
            item.unlink(missing_ok=True)
            todo = "removed it: run the workflow again and it makes it anew"
        raise InputError(f"{path}: {reason}{more}; {todo}")


def _out_folder(log) -> Path | None:
    """The workflow's output folder: the one that holds the job's ``logs/`` (None for a job
    without a log)."""
    parents = Path(log[0]).resolve().parents if log else ()
    return next((folder.parent for folder in parents if folder.name == "logs"), None)


def seal_outputs(smk) -> None:
    """Write SHA256SUMS into every folder the job made (its last step, once the folder is
    whole): the jobs that read the folder, and ``dlmap check-results``, verify it."""
    from dlmap.files import write_manifest

    for folder in map(Path, _flat(smk.output)):
        if folder.is_dir():
            write_manifest(folder)


def _one_line_for_dlmap_errors(kind, error, trace):
    """A job's dlmap error (a damaged input named, what to do) as its log's one last line;
    anything else is a bug and keeps its traceback."""
    from dlmap.errors import DlmapError

    if isinstance(error, DlmapError):
        print(f"dlmap: error: {error}", file=sys.stderr)
        return
    sys.__excepthook__(kind, error, trace)


@contextlib.contextmanager
def benchmark(smk, logs: str = "/logs/", benchmarks: str = "/benchmarks/"):
    """Time the job and write Snakemake's benchmark columns (s, max_rss in MB) plus the GPU's
    peak memory to OUT/benchmarks/RULE/NAME.tsv, for a rule that cannot carry a `benchmark:`
    because it is cached between workflows (invert_chunk): its cost estimate stays checkable."""
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = ""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gpu_mb = f"{torch.cuda.max_memory_allocated() / 2**20:.1f}"
    path = Path(smk.log[0].replace(logs, benchmarks, 1)).with_suffix(".tsv")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\tmax_rss\tmax_gpu_mb\n{seconds:.4f}\t{rss_mb:.2f}\t{gpu_mb}\n")
