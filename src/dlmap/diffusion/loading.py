"""Loading network weights strictly: every key of a checkpoint must match a parameter of the
network and the reverse (``load_strict``), and the empty prompt's text embedding that SD2 and
SeeSR condition on (``encode_empty_prompt``)."""

from __future__ import annotations

import logging
import os
import re

import torch
from diffusers import ModelMixin

from dlmap.weights.cache import WeightKeyError

logger = logging.getLogger(__name__)


def load_strict(
    model_class, folder, subfolder: str | None = None, ignore: re.Pattern | None = None, **kwargs
):
    """``model_class.from_pretrained`` that fails on missing, unexpected or mismatched keys.

    ``ignore`` matches the only unexpected keys allowed (for example SeeSR's UNet image
    attentions, see ``dlmap.diffusion.seesr``); how many were dropped is logged. Works for diffusers
    and transformers models alike (both report loading info).
    """
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    if issubclass(model_class, ModelMixin):
        kwargs.setdefault("low_cpu_mem_usage", False)  # the same checks with or without accelerate
        diffusers_logging.set_verbosity_error()  # key problems are reported below, once
    where = os.path.join(str(folder), subfolder or "")
    try:
        model, info = model_class.from_pretrained(
            folder, subfolder=subfolder, output_loading_info=True, **kwargs
        )
    except RuntimeError as error:  # torch's load_state_dict: "size mismatch for KEY: ..."
        lines = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        if not lines:
            raise
        shown = "; ".join(lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
        raise WeightKeyError(f"{model_class.__name__} weights in {where}: {shown}") from error
    finally:
        diffusers_logging.set_verbosity(verbosity)
    if ignore is not None:
        dropped = [key for key in info.get("unexpected_keys") or [] if ignore.search(key)]
        info["unexpected_keys"] = [k for k in info["unexpected_keys"] if k not in dropped]
        if not dropped:
            raise WeightKeyError(f"{where}: expected keys matching {ignore.pattern}, found none")
        logger.info("%s: dropped %d keys matching %s", where, len(dropped), ignore.pattern)
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        keys = info.get(kind) or []
        if keys:
            shown = ", ".join(str(k) for k in list(keys)[:5])
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            problems.append(f"{len(keys)} {kind.replace('_', ' ')} ({shown}{more})")
    if problems:
        raise WeightKeyError(
            f"{model_class.__name__} weights in {where} do not match the network: "
            + "; ".join(problems)
        )
    return model


def encode_empty_prompt(folder) -> torch.Tensor:
    """SD2's embedding of the empty prompt (1, 77, 1024), from its tokenizer and text encoder."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    text_encoder = load_strict(CLIPTextModel, folder, "text_encoder")
    ids = tokenizer(
        "", padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return text_encoder(ids)[0]
