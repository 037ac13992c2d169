"""How SeeSR's UNet, loaded as the authors' MAP code loads it, differs from SD2-base's UNet.

SeeSR's training script freezes the UNet and trains only its ``image_attentions``, which the
authors' MAP code switches off; so the two UNets should be identical. This script loads both
strictly (SeeSR's ``image_attentions`` keys dropped, every other key checked) and prints, per
top-level block, the largest absolute weight difference and the number of tensors that differ.

    python bench/seesr_unet_vs_sd2.py                       # from the dlmap weights cache
    python bench/seesr_unet_vs_sd2.py --sd2 DIR --seesr DIR
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from diffusers import UNet2DConditionModel

from dlmap.diffusion.loading import load_strict
from dlmap.diffusion.seesr import SEESR_UNET_EXTRA_KEYS
from dlmap.weights import cache as weights
from dlmap.weights import catalogue


def compare(sd2_folder, seesr_folder) -> dict[str, tuple[float, int, int]]:
    """Per block: (largest |difference|, tensors that differ, tensors)."""
    sd2 = load_strict(UNet2DConditionModel, sd2_folder, "unet").state_dict()
    seesr = load_strict(
        UNet2DConditionModel, seesr_folder, "unet", ignore=SEESR_UNET_EXTRA_KEYS
    ).state_dict()
    table = defaultdict(lambda: [0.0, 0, 0])
    for key, value in sd2.items():
        block = ".".join(key.split(".")[:2]) if key.split(".")[1].isdigit() else key.split(".")[0]
        difference = (value.double() - seesr[key].double()).abs().max().item()
        row = table[block]
        row[0], row[1], row[2] = max(row[0], difference), row[1] + (difference > 0), row[2] + 1
    return {block: tuple(row) for block, row in table.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd2", help="SD2-base folder (default <cache>/sd2-base)")
    parser.add_argument("--seesr", help="SeeSR folder (default <cache>/seesr)")
    parser.add_argument("--cache", help="dlmap weights cache")
    args = parser.parse_args(argv)
    try:
        sd2 = catalogue.locate("sd2-base", args.sd2, args.cache)
        seesr = catalogue.locate("seesr", args.seesr, args.cache)
    except (weights.WeightsMissingError, weights.ChecksumError) as error:
        print(f"seesr_unet_vs_sd2: {error}", file=sys.stderr)
        return 1
    table = compare(sd2, seesr)
    print(f"{'block':<18}{'max |diff|':>12}{'differ':>8}{'tensors':>9}")
    for block, (largest, differ, count) in table.items():
        print(f"{block:<18}{largest:>12.3g}{differ:>8}{count:>9}")
    total = sum(row[1] for row in table.values())
    print(f"{total} of {sum(row[2] for row in table.values())} tensors differ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
