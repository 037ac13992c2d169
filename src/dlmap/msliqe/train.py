"""Training MS-LIQE (paper Sec. V, Eqs. 25-27), one readable loop.

Each batch item is a pair (x, y) of training images from one data set. Its label is binary,
p(x, y) = 1 if MOS(x) >= MOS(y) else 0 (Eq. 25); the model's probability that x is better is
Thurstone's with unit variance, p_w = Phi((q_w(x) - q_w(y)) / sqrt(2)) (Eq. 26); the loss is
the fidelity loss 1 - sqrt(p p_w + eps) - sqrt((1 - p)(1 - p_w) + eps) (Eq. 27; the eps keeps
the gradient finite at p_w = 0 or 1, 1e-8 as in LIQE and UNIQUE). AdamW (decoupled weight
decay 1e-3), batch 48, lr 5e-6 with cosine annealing, 80 epochs: the paper's values, all in
``TrainConfig``. docs/msliqe.md argues each choice below against the paper and LIQE's code.

Batches follow LIQE's reference training (``pairing="per-dataset"``, the default): each step
draws a sub-batch from every training data set in LIQE's proportions (``pairs.sub_batch_sizes``:
4/4/4/4/16/16 for LIVE, CSIQ, BID, CLIVE, KonIQ-10k, KADID-10k; equal shares for other sets),
forms every pair within each sub-batch, averages Eq. 27 over each set's pairs and then over
the sets; CLIP's logit scale is frozen (``freeze_logit_scale``) and images are flipped
horizontally at random (``flip``). An epoch is as many steps as the set that needs most takes
to show each of its images once; the others are reshuffled and cycled. Each image is scored on
random views (``random_crops``): the pyramid's top level and one crop at a random stride-32
position of each other level (``model.training_views``); validation and the prior use the
fixed views. Eq. 24's temperature is learned (``learn_temperature``: log tau, no weight decay,
from the config's 2) and stored in the final checkpoint's config, where the prior reads it.
The rate follows LIQE's schedule (``lr_schedule="liqe"``: CosineAnnealingLR with T_max = 5
stepped per epoch, a zero rate skipped as its script does) or one cosine over all steps
(``"single"``). ``pairing="partner"`` is the earlier scheme: each training image once as x with
a random partner y from its own set, all sets shuffled together, fixed views.

The batches, flips and crops of epoch e depend only on (seed, e), so a run resumed from the
checkpoint of epoch e (model, temperature, optimiser, schedule) continues exactly as an
uninterrupted one.

Images are read from a manifest (``dlmap.data.manifests``' CSV: dataset, image, mos, split, ...),
resized so the shorter side is ``image_size`` and centre-cropped (the paper's preprocessing,
``dlmap.images.load_image``; recorded in the checkpoint); MS-LIQE takes its views from it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dlmap import progress
from dlmap.data.manifests import Entry, read_manifest_resolved
from dlmap.errors import InputError
from dlmap.msliqe.model import MSLIQE, MSLIQEConfig, config_from_dict
from dlmap.msliqe.pairs import (
    PROPORTIONS,
    ImageSet,
    PairSet,
    StepSet,
    epoch_batches,
    epoch_pairs,
    fidelity_loss,
    pair_labels,
    per_dataset_loss,
    thurstone_probability,
)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (paper values by default). ``init``: "openai" (OpenAI's CLIP
    ViT-B/32 from the cache: ``dlmap weights fetch clip-vit-b-32``), "random" (training from
    scratch: tests), or the path of a CLIP state dict."""

    epochs: int = 80
    batch_size: int = 48
    lr: float = 5e-6
    weight_decay: float = 1e-3
    eps: float = 1e-8
    seed: int = 0
    image_size: int = 512
    init: str = "openai"
    workers: int = 0
    model: MSLIQEConfig = field(default_factory=MSLIQEConfig)
    pairing: str = "per-dataset"  # LIQE's sub-batch per data set; "partner": one pair per image
    flip: bool = True  # random horizontal flips (LIQE)
    freeze_logit_scale: bool = True  # CLIP's logit scale is not trained (LIQE)
    proportions: str = "liqe"  # per-set sub-batches: LIQE's 4/4/4/4/16/16, or "equal"
    random_crops: bool = True  # train on random views of the pyramid (LIQE: random crops)
    learn_temperature: bool = True  # Eq. 24's tau is learned ("a learned temperature")
    lr_schedule: str = "liqe"  # LIQE's per-epoch cosine (T_max = cosine_period) or "single"
    cosine_period: int = 5

    def __post_init__(self):
        for name in ("epochs", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0 or self.weight_decay < 0 or not self.eps > 0:
            raise InputError("lr and eps must be > 0 and weight_decay >= 0")
        if self.pairing not in PAIRINGS:
            raise InputError(f"pairing must be one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        if self.proportions not in PROPORTIONS:
            raise InputError(f"proportions must be one of {', '.join(PROPORTIONS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        if self.cosine_period < 1 or not self.model.temperature > 0:
            raise InputError("cosine_period must be >= 1 and the temperature > 0")


PAIRINGS = ("per-dataset", "partner")
LR_SCHEDULES = ("liqe", "single")


def liqe_lr_factor(epoch: int, period: int = 5) -> float:
    """The rate of epoch ``epoch`` (from 0) over the base rate in LIQE's training: PyTorch's
    CosineAnnealingLR(T_max = period) stepped once per epoch, which rises again after each
    minimum (period 2 T_max), with its script's extra step whenever the rate is exactly 0."""
    position = -1
    for _ in range(epoch + 1):
        position += 1
        if position % (2 * period) == period:  # (1 + cos(pi)) / 2 = 0: LIQE steps past it
            position += 1
    return (1 + math.cos(math.pi * position / period)) / 2


def lr_factor(config: TrainConfig, steps_per_epoch: int):
    """The rate of each optimiser step over the base rate, by ``config.lr_schedule``."""
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "single":
        return lambda step: (1 + math.cos(math.pi * min(step, total) / total)) / 2
    return lambda step: liqe_lr_factor(step // steps_per_epoch, config.cosine_period)


def load_trained(path: str | os.PathLike) -> MSLIQE:
    """A final checkpoint of ``train`` (``FINAL``) with the MS-LIQE config it records, the
    learned temperature included."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return MSLIQE.from_config(config_from_dict(state["config"]), state)


# --- Eqs. 25-27 -------------------------------------------------------------------------------


LAST = "last.pt"  # full state after the latest epoch (model, optimiser, schedule, history)
FINAL = "ms_liqe.pt"  # the trained CLIP and its MS-LIQE config: what the prior loads


def initial_model(config: TrainConfig, cache=None) -> MSLIQE:
    """MS-LIQE at the start of training, from ``config.init`` (see ``TrainConfig``)."""
    torch.manual_seed(config.seed)
    if config.init == "random":
        return MSLIQE.from_config(config.model)
    if config.init == "openai":
        return MSLIQE.from_config(config.model, openai_clip_state(cache))
    return MSLIQE.from_config(config.model, config.init)


def openai_clip_state(cache=None) -> dict:
    """OpenAI's CLIP ViT-B/32 as an open_clip state dict, from the dlmap cache."""
    import open_clip

    from dlmap.weights import catalogue

    clip = catalogue.get("clip-vit-b-32")
    clip.require(cache)
    (path,) = clip.outputs(cache)
    return open_clip.load_openai_model(str(path), precision="fp32", device="cpu").state_dict()


def config_to_dict(config: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))


NEUTRAL_SETTINGS = ("workers",)  # change no result: a job may resume with other values


def same_training(saved: dict, config: TrainConfig) -> bool:
    """Whether a saved state was trained with ``config``, up to the settings that change no
    result (the data-loading workers: each epoch's batches and flips are fixed in advance)."""
    current = config_to_dict(config)
    return all(saved.get(k) == v for k, v in current.items() if k not in NEUTRAL_SETTINGS)


def train(
    config: TrainConfig,
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    resume: bool = False,
    stop_after: int | None = None,
    cache=None,
    quiet: bool = False,
    resume_from: str | os.PathLike | None = None,
    until: int | None = None,
) -> list[dict]:
    """Train MS-LIQE on the manifest's ``train`` split, validating on its ``val`` split after
    every epoch; writes ``out/metrics.csv`` (and its plot ``metrics.png``) and ``out/last.pt``
    every epoch, and ``out/ms_liqe.pt``
    at the end. ``resume`` continues from ``out/last.pt``, ``resume_from`` from another run's
    state file (a previous job of a chain; same config required either way); ``stop_after``
    ends this run after that many epochs and ``until`` after epoch ``until`` (a
    time-limited job). Returns the per-epoch metrics."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = read_manifest_resolved(manifest)
    training = [item for item in items if item.split == "train"]
    validation = [item for item in items if item.split == "val"]
    if not training:
        raise InputError(f"manifest {manifest}: no images in the 'train' split")
    if config.pairing == "per-dataset":
        steps_per_epoch = len(_schedule(training, config, 0)[0])
    else:
        pairs = epoch_pairs(training, config.seed, 0)
        steps_per_epoch = math.ceil(len(pairs) / config.batch_size)

    state_file = Path(resume_from) if resume_from is not None else out / LAST if resume else None
    if state_file is not None and not state_file.is_file():
        raise InputError(f"{state_file}: no training state to resume from")
    model = initial_model(config, cache) if state_file is None else MSLIQE.from_config(config.model)
    model.requires_grad_(True).train()
    if config.freeze_logit_scale:
        model.clip.logit_scale.requires_grad_(False)
    log_tau = torch.nn.Parameter(
        torch.tensor(math.log(config.model.temperature)), requires_grad=config.learn_temperature
    )
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if config.learn_temperature:  # a scalar of the loss's scale: no weight decay
        groups.append({"params": [log_tau], "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
    history, start = [], 0
    if state_file is not None:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if not same_training(state["config"], config):
            raise InputError(f"{state_file} was written with another configuration; cannot resume")
        model.clip.load_state_dict(state["model"])
        with torch.no_grad():
            log_tau.copy_(torch.tensor(math.log(state["temperature"])))
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, start = state["history"], state["epoch"] + 1
    model.config = replace(model.config, temperature=float(log_tau.detach().exp()))

    end = config.epochs if stop_after is None else min(config.epochs, start + stop_after)
    end = end if until is None else min(end, until)
    for epoch in range(start, end):
        loader = _epoch_loader(training, config, epoch)
        losses = []
        bar = progress.bar(loader, quiet, desc=f"epoch {epoch + 1}/{config.epochs}")
        for batch in bar:
            tau = log_tau.exp()
            if config.pairing == "per-dataset":
                images, views, mos, sizes = batch
                q = model(images, views, temperature=tau)
                loss = per_dataset_loss(q, mos, sizes, config.eps)
            else:
                x, y, mos = batch
                q = model(torch.cat([x, y]), temperature=tau)
                p_model = thurstone_probability(q[: len(x)], q[len(x) :])
                labels = pair_labels(mos[:, 0], mos[:, 1])
                loss = fidelity_loss(labels, p_model, config.eps).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.4f}")
        model.config = replace(model.config, temperature=float(log_tau.detach().exp()))
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "loss": float(np.mean(losses)),
            "temperature": model.config.temperature,
        }
        for name, result in validate(model, validation, config).items():
            row.update({f"{name}_srcc": result["srcc"], f"{name}_plcc": result["plcc_raw"]})
        history.append(row)
        _write_metrics(history, out / "metrics.csv")
        _plot(history, out / "metrics.png")
        state = {
            "config": config_to_dict(config),
            "epoch": epoch,
            "model": model.clip.state_dict(),
            "temperature": model.config.temperature,
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "history": history,
        }
        _save_atomic(state, out / LAST)
        if not quiet:
            print(
                ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                )
            )
    if end == config.epochs:
        # also when resuming a finished run: a rerun that deleted them gets them back
        _write_metrics(history, out / "metrics.csv")
        _plot(history, out / "metrics.png")
        final = {
            "state_dict": model.clip.state_dict(),
            "config": json.loads(json.dumps(asdict(model.config))),  # the learned tau in it
            "history": history,
        }
        _save_atomic(final, out / FINAL)
    return history


def _schedule(training: list[Entry], config: TrainConfig, epoch: int):
    draws = len(config.model.scales) if config.random_crops else 0
    return epoch_batches(training, config.batch_size, config.seed, epoch, config.proportions, draws)


def _epoch_loader(training: list[Entry], config: TrainConfig, epoch: int):
    """The batches of one epoch under ``config.pairing`` (see the module docstring)."""
    if config.pairing == "per-dataset":
        views = config.model if config.random_crops else None
        schedule = _schedule(training, config, epoch)
        steps = StepSet(training, schedule, config.image_size, config.flip, views)
        return torch.utils.data.DataLoader(
            steps, batch_size=None, num_workers=config.workers, collate_fn=_as_is
        )
    pairs = PairSet(training, epoch_pairs(training, config.seed, epoch), config.image_size)
    return torch.utils.data.DataLoader(
        pairs, batch_size=config.batch_size, num_workers=config.workers
    )


def _as_is(item):
    return item


def can_resume(out: str | os.PathLike, config: TrainConfig) -> bool:
    """Whether ``out/last.pt`` exists and was written with ``config`` (so ``train`` can resume)."""
    path = Path(out) / LAST
    if not path.is_file():
        return False
    state = torch.load(path, map_location="cpu", weights_only=True)
    return same_training(state.get("config") or {}, config)


def validate(model: MSLIQE, items: list[Entry], config: TrainConfig) -> dict[str, dict]:
    """SRCC/PLCC of the model on each data set's validation images."""
    from dlmap.priors.evaluation import correlations

    results = {}
    for name in sorted({item.dataset for item in items}):
        chosen = [item for item in items if item.dataset == name]
        scores = predict(model, chosen, config)
        results[name] = correlations(scores, [item.mos for item in chosen])
    return results


@torch.no_grad()
def predict(model: MSLIQE, items: list[Entry], config: TrainConfig) -> list[float]:
    loader = torch.utils.data.DataLoader(
        ImageSet(items, config.image_size), batch_size=config.batch_size, num_workers=config.workers
    )
    model.eval()
    scores = [score for images in loader for score in model(images).tolist()]
    model.train()
    return scores


def _write_metrics(history: list[dict], path: Path) -> None:
    from dlmap.files import write_rows

    first = ["epoch", "lr", "loss"]
    columns = first + sorted({key for row in history for key in row} - set(first))
    write_rows([{key: row.get(key, "") for key in columns} for row in history], path)


def _plot(history: list[dict], path: Path) -> None:
    from dlmap.figures.plots import figure_png_bytes, plot_training
    from dlmap.files import write_bytes_atomic

    write_bytes_atomic(path, figure_png_bytes(plot_training(history)))


def _save_atomic(state: dict, path: Path) -> None:
    from dlmap.files import atomic_path

    with atomic_path(path) as temporary:
        torch.save(state, temporary)
