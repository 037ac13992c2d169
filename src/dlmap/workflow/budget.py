"""What the workflow's GPU jobs cost: one formula behind every GPU rule's SLURM request
(``workflow/rules/common.smk``) and the paper's GPU-hours
(``dlmap.workflow.plan.project_gpu_hours``).

A MAP iteration (Alg. 1) runs h forward (T steps of 2 UNet + ControlNet calls), its gradient
(the same calls again plus their backward pass: the ``recompute`` mode keeps memory
independent of T), the VAE decoder and the prior: its time grows with T and the image size,
its memory with the batch only. A job loads its networks once (``load_seconds``) and then
works through its images, so with ``GpuCosts``' measured constants (per image, at the job's
batch):

    invert_chunk                 load + images * inversion_seconds
    enhance_chunk, enhance_ablation, post_enhance
                                 load + images * iters * iteration_seconds
    calibrate_prior, evaluate_prior
                                 load + images * score_seconds
    select_pairs                 load + images * (M + M (M - 1) / 2) * score_seconds
                                 (M enhancers: each output embedded, each pair's distance)
    train_msliqe                 load + its epochs * images_per_epoch * train_seconds
                                 (one job of a chain under the walltime: ``train_segments``)

and each job asks for that times ``margin`` as its runtime (queues kill jobs that overrun;
early stopping only shortens a job; a retry asks for more, never past the partition's walltime:
``capped``), ``host_gib`` times ``margin`` of host memory, and a GPU
with ``weights_gib + batch * activation_gib`` of memory. Every block names the GPU and the
precision its numbers are for and whether they are an estimate or measured.
``bench/gpu_iteration.py`` measures the diffusion constants on your GPU and prints them as a
``gpu_costs`` block for the config; until someone has, config.yaml's time constants are
estimates: FLOPs counted on the paper's networks (``dlmap.enhance.flops``: 171 TFLOP per MAP
iteration, 51 per inversion at 512 x 512 and T = 20) over the GPU's peak at an assumed
``efficiency`` (the weights and host memory come from ``bench/full_size.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dlmap.errors import InputError


@dataclass(frozen=True)
class GpuCosts:
    """Costs of the paper's backbone at 512 x 512, T = 20, one GPU (per image), estimated
    or measured on the GPU and at the precision they name. The workflow reads them from its
    config's ``gpu_costs`` block; the defaults are config.yaml's estimates."""

    iteration_seconds: float = 11.0  # one MAP iteration of one image, at the workflow's batch
    inversion_seconds: float = 3.3  # one EDICT inversion (Alg. 1 line 2) of one image
    load_seconds: float = 120.0  # reading and moving the networks to the GPU, once per job
    score_seconds: float = 0.1  # one image through a prior or a pair-selection metric
    train_seconds: float = 0.02  # one training image of MS-LIQE for one epoch (all its views)
    host_gib: float = 16.0  # peak resident memory of a job (bench/full_size.py: 15.1 GiB)
    weights_gib: float = 6.7  # the networks in float32: 1786 M parameters (bench/full_size.py)
    activation_gib: float = 6.0  # one image's share of a MAP iteration's peak
    margin: float = 1.5  # requested runtime and host memory over the formula's
    gpu: str = "A100 80GB"  # the GPU these numbers are for
    precision: str = "float32"  # the networks' arithmetic: float32, tf32 or bf16
    basis: str = "estimate"  # estimate (FLOPs / (peak x efficiency)) or measured
    efficiency: float = 0.8  # of the GPU's peak, assumed by an estimate

    def __post_init__(self):
        for name, value in asdict(self).items():
            if name in TEXT_FIELDS:
                if not isinstance(value, str) or not value.strip():
                    raise InputError(f"gpu_costs.{name} must be a non-empty string, got {value!r}")
            elif not _positive(value):
                raise InputError(f"gpu_costs.{name} must be a positive number, got {value!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"gpu_costs.precision must be one of {', '.join(PRECISIONS)}")
        if self.basis not in BASES:
            raise InputError(f"gpu_costs.basis must be one of {', '.join(BASES)}")
        if self.efficiency > 1:
            share = self.efficiency
            raise InputError(f"gpu_costs.efficiency is a share of the peak (<= 1), got {share!r}")

    def describe(self) -> str:
        """What the numbers are: "estimate for A100 80GB, float32 (efficiency 0.8)"."""
        what = f"{self.basis} for {self.gpu}, {self.precision}"
        return what + (f" (efficiency {self.efficiency:g})" if self.basis == "estimate" else "")


TEXT_FIELDS = ("gpu", "precision", "basis")
PRECISIONS = ("float32", "tf32", "bf16")
BASES = ("estimate", "measured")


def _positive(value) -> bool:
    """A finite number > 0 (an int too large for a float, such as 10**400, is not finite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:
        return False


def _product(*factors) -> float:
    """The product of ``factors`` as a float: inf where it overflows (ints past 1.8e308
    included), so that a request that cannot be met is refused rather than crashing."""
    try:
        return math.prod(float(factor) for factor in factors)
    except OverflowError:
        return math.inf


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise InputError(
            f"{what} overflows a request (a count in the config or a gpu_costs value is far "
            "too large)"
        )
    return value


def job_minutes(work_seconds: float, costs: GpuCosts, attempt: int = 1) -> int:
    """Runtime to request for a job that loads its networks and then works ``work_seconds``,
    in whole minutes: (load + work) x margin, times ``attempt`` (a retried job asks for
    more, in case it ran out of time)."""
    work = _product(work_seconds)
    seconds = _product(costs.load_seconds + work, costs.margin, max(int(attempt), 1))
    return max(math.ceil(_finite(seconds, f"the runtime of {work:.3g} s of work") / 60), 1)


def enhance_job_minutes(images: int, iters: int, costs: GpuCosts, attempt: int = 1) -> int:
    """Runtime to request for one enhancement job (one prior x one chunk), in minutes."""
    return job_minutes(_product(images, iters, costs.iteration_seconds), costs, attempt)


def invert_job_minutes(images: int, costs: GpuCosts, attempt: int = 1) -> int:
    """Runtime to request for one inversion job (one chunk), in minutes."""
    return job_minutes(_product(images, costs.inversion_seconds), costs, attempt)


def score_job_minutes(images: int, costs: GpuCosts, attempt: int = 1) -> int:
    """Runtime to request for a job that scores ``images`` images with one prior."""
    return job_minutes(_product(images, costs.score_seconds), costs, attempt)


def pairs_job_minutes(images: int, enhancers: int, costs: GpuCosts, attempt: int = 1) -> int:
    """Runtime to request for pair selection (Eq. 18): every enhancer's output of every test
    image embedded, and the distance of every pair of outputs."""
    calls = images * (enhancers + enhancers * (enhancers - 1) // 2)
    return job_minutes(_product(calls, costs.score_seconds), costs, attempt)


def train_job_minutes(images_per_epoch: int, epochs: int, costs: GpuCosts, attempt=1) -> int:
    """Runtime to request for MS-LIQE's training (Eqs. 25-27)."""
    return job_minutes(_product(epochs, images_per_epoch, costs.train_seconds), costs, attempt)


def train_segments(epochs: int, epoch_seconds: float, costs: GpuCosts, max_minutes: int):
    """MS-LIQE's training as a chain of jobs under a partition's walltime: the epoch ranges
    [(start, end), ...], as many epochs per job as keep its request, (load + epochs x
    epoch_seconds) x margin, within ``max_minutes``. Each job resumes the state the one before
    wrote, and resuming is exact, so the chain ends where one long run would. One epoch that
    does not fit is an ``InputError`` naming both numbers."""

    def minutes(count: int) -> int:
        return job_minutes(_product(count, epoch_seconds), costs)

    room = max_minutes * 60 / costs.margin - costs.load_seconds
    per_job = max(min(math.floor(room / epoch_seconds) if room > 0 else 0, epochs), 0)
    while per_job > 0 and minutes(per_job) > max_minutes:  # rounding at the edge
        per_job -= 1
    if per_job < 1:
        raise InputError(
            f"slurm.max_runtime_minutes: one MS-LIQE epoch needs a job of {minutes(1)} minutes "
            f"(by gpu_costs), more than the {max_minutes} allowed; raise it, or measure "
            "gpu_costs.train_seconds on your GPU"
        )
    return [(start, min(start + per_job, epochs)) for start in range(0, epochs, per_job)]


def capped(minutes: int, max_minutes: int | None) -> int:
    """A retried job asks for more time (``attempt`` x), but never past the partition's
    walltime, where SLURM would refuse the job outright."""
    return minutes if max_minutes is None else min(minutes, max_minutes)


def host_mem_mb(costs: GpuCosts) -> int:
    """Host memory to request for a GPU job, in MB (rounded up to 1000)."""
    megabytes = _finite(_product(costs.host_gib, 1024, costs.margin), "gpu_costs.host_gib")
    return math.ceil(megabytes / 1000) * 1000


def gpu_gib(batch: int, costs: GpuCosts) -> float:
    """GPU memory one job needs at ``batch`` images per solve."""
    return _finite(costs.weights_gib + _product(batch, costs.activation_gib), "the GPU memory")
