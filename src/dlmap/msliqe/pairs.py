"""MS-LIQE's training pairs and loss (Eqs. 25-27): the pairs' labels, the Thurstone
probability, the fidelity loss, and how images are drawn into pairs (LIQE's per-data-set
sub-batches, or one partner per image). ``dlmap.msliqe.train`` runs the training."""

from __future__ import annotations

import math

import numpy as np
import torch

from dlmap.data.manifests import Entry
from dlmap.errors import InputError
from dlmap.images import load_image

SQRT2 = math.sqrt(2.0)

#: LIQE's per-data-set sub-batches (its training script: 4 each for LIVE, CSIQ, BID and LIVE
#: Challenge, 16 each for KonIQ-10k and KADID-10k: 48, the paper's batch), by dlmap's names
LIQE_SUB_BATCHES = {"live": 4, "csiq": 4, "bid": 4, "clive": 4, "koniq10k": 16, "kadid10k": 16}
PROPORTIONS = ("liqe", "equal")


def sub_batch_sizes(names, batch_size: int, proportions: str = "liqe") -> dict[str, int]:
    """Images per step from each training set: ``batch_size`` shared in LIQE's proportions
    (48 over its six sets gives exactly 4/4/4/4/16/16) when every set is one of LIQE's, else
    (or with ``proportions="equal"``) equally; at least 2 each, to form a pair (so a batch
    under 48 over LIQE's six sets takes a few more images than asked)."""
    names = list(names)
    if batch_size < 2 * len(names):
        raise InputError(
            f"batch size {batch_size} gives the {len(names)} training sets fewer than 2 images "
            "each: no pairs to form"
        )
    known = proportions == "liqe" and all(name in LIQE_SUB_BATCHES for name in names)
    weights = [LIQE_SUB_BATCHES[name] if known else 1 for name in names]
    total = sum(weights)
    return {
        name: max(2, int(batch_size * weight / total))
        for name, weight in zip(names, weights, strict=True)
    }


def pair_labels(mos_x: torch.Tensor, mos_y: torch.Tensor) -> torch.Tensor:
    """Eq. 25: 1 where MOS(x) >= MOS(y), else 0."""
    return (mos_x >= mos_y).to(mos_x.dtype)


def thurstone_probability(q_x: torch.Tensor, q_y: torch.Tensor) -> torch.Tensor:
    """Eq. 26: Phi((q_x - q_y) / sqrt(2)), the probability that x is judged better."""
    z = (q_x - q_y) / SQRT2
    return 0.5 * (1.0 + torch.erf(z / SQRT2))  # Phi(z) = (1 + erf(z / sqrt(2))) / 2


def fidelity_loss(p: torch.Tensor, p_model: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 27 per pair, with eps inside the square roots (finite gradient at 0 and 1)."""
    return 1.0 - torch.sqrt(p * p_model + eps) - torch.sqrt((1.0 - p) * (1.0 - p_model) + eps)


# --- data -------------------------------------------------------------------------------------


class ImageSet(torch.utils.data.Dataset):
    def __init__(self, items: list[Entry], size: int):
        self.items, self.size = items, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.items[index].image, self.size)  # shorter side, centre crop


def epoch_pairs(items: list[Entry], seed: int, epoch: int) -> np.ndarray:
    """(N, 2) indices into ``items``: each image once as x, a random partner y from the same
    data set, all shuffled. Depends only on (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    pairs = []
    for members in training_sets(items).values():
        offsets = rng.integers(1, len(members), size=len(members))  # never the image itself
        partners = members[(np.arange(len(members)) + offsets) % len(members)]
        pairs.append(np.stack([members, partners], axis=1))
    if not pairs:
        raise InputError("no data set has two training images to pair")
    pairs = np.concatenate(pairs)
    return pairs[rng.permutation(len(pairs))]


def training_sets(items: list[Entry]) -> dict[str, np.ndarray]:
    """Indices of each data set's training images (sets of fewer than two are left out)."""
    by_set: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_set.setdefault(item.dataset, []).append(index)
    return {name: np.array(by_set[name]) for name in sorted(by_set) if len(by_set[name]) > 1}


def epoch_batches(
    items: list[Entry],
    batch_size: int,
    seed: int,
    epoch: int,
    proportions: str = "liqe",
    draws_per_image: int = 0,
):
    """LIQE's schedule: a list of steps, each a list of (index array) sub-batches, one per data
    set, of ``sub_batch_sizes`` images (fewer if a set is smaller); the set that needs the most
    steps shows each of its images once, the others are reshuffled and cycled. Also returns the
    flips, one bool per image per step, and ``draws_per_image`` numbers in [0, 1) per image per
    step (where its random views are cropped). Depends only on (seed, epoch)."""
    sets = training_sets(items)
    if not sets:
        raise InputError("no data set has two training images to pair")
    wanted = sub_batch_sizes(sets, batch_size, proportions)
    rng = np.random.default_rng([seed, epoch])
    sizes = {name: min(wanted[name], len(members)) for name, members in sets.items()}
    steps = max(math.ceil(len(members) / sizes[name]) for name, members in sets.items())
    streams = {name: _stream(members, steps, sizes[name], rng) for name, members in sets.items()}
    batches = [[streams[name][step] for name in sets] for step in range(steps)]
    counts = [sum(len(part) for part in batch) for batch in batches]
    flips = [rng.random(count) < 0.5 for count in counts]
    draws = [rng.random((count, draws_per_image)) for count in counts]
    return batches, flips, draws


def _stream(members: np.ndarray, steps: int, size: int, rng) -> list[np.ndarray]:
    """``steps`` sub-batches of ``size`` distinct members, walking through shuffled passes
    over ``members`` (a member skipped to keep a sub-batch distinct comes next time)."""
    pool: list[int] = []
    rows = []
    for _ in range(steps):
        row: list[int] = []
        while len(row) < size:
            if all(member in row for member in pool):
                pool += [int(m) for m in rng.permutation(members)]
            position = next(k for k, member in enumerate(pool) if member not in row)
            row.append(pool.pop(position))
        rows.append(np.array(row))
    return rows


class StepSet(torch.utils.data.Dataset):
    """One item per step of ``epoch_batches``: (images, views or None, MOS, sub-batch sizes).
    With ``views`` (an ``MSLIQEConfig``), each image's random training views are cut here,
    in the data-loading workers (``model.training_views``)."""

    def __init__(self, items: list[Entry], schedule, size: int, flip: bool, views=None):
        self.images, self.items = ImageSet(items, size), items
        self.batches, self.flips, self.draws = schedule
        self.flip, self.views = flip, views

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        from dlmap.msliqe.model import training_views

        indices = np.concatenate(self.batches[index])
        images = []
        for k, i in enumerate(indices):
            image = self.images[int(i)]
            flipped = self.flip and self.flips[index][k]
            images.append(torch.flip(image, dims=[-1]) if flipped else image)
        views = None
        if self.views is not None:
            draws = self.draws[index]
            cut = [training_views(image, self.views, draws[k]) for k, image in enumerate(images)]
            views = torch.stack(cut)
        mos = torch.tensor([self.items[int(i)].mos for i in indices], dtype=torch.float32)
        return torch.stack(images), views, mos, [len(part) for part in self.batches[index]]


def per_dataset_loss(q: torch.Tensor, mos: torch.Tensor, sizes, eps: float) -> torch.Tensor:
    """Eq. 27 over every pair within each sub-batch, averaged per data set, then over sets."""
    losses, start = [], 0
    for size in sizes:
        q_set, mos_set = q[start : start + size], mos[start : start + size]
        i, j = torch.triu_indices(size, size, offset=1, device=q.device)
        p_model = thurstone_probability(q_set[i], q_set[j])
        losses.append(fidelity_loss(pair_labels(mos_set[i], mos_set[j]), p_model, eps).mean())
        start += size
    return torch.stack(losses).mean()


class PairSet(torch.utils.data.Dataset):
    """Batch items of Eq. 25: (image x, image y, MOS x, MOS y) for index pairs."""

    def __init__(self, items: list[Entry], pairs: np.ndarray, size: int):
        self.images, self.items, self.pairs = ImageSet(items, size), items, pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        i, j = (int(k) for k in self.pairs[index])
        mos = torch.tensor([self.items[i].mos, self.items[j].mos], dtype=torch.float32)
        return self.images[i], self.images[j], mos


# --- the loop ---------------------------------------------------------------------------------
