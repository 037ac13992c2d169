"""RAM/DAPE image embeddings: key mapping onto timm's Swin, LoRA merging, strict errors."""

import pytest
import torch
import torch.nn.functional as F
from helpers import photo
from timm.models.swin_transformer import checkpoint_filter_fn

from dlmap.diffusion import dape, tiny
from dlmap.weights.cache import WeightKeyError


@pytest.fixture()
def embedder():
    torch.manual_seed(0)
    return dape.ImageEmbedder(tiny.TINY_DAPE).double().eval()


def _ram_state(embedder, buffers=True):
    """A RAM checkpoint as released: visual_encoder.* with buffers, image_proj, heads."""
    state = dape.embedder_to_ram_state(embedder)
    if buffers:
        for name, module in embedder.encoder.named_modules():
            if name.endswith(".attn"):
                state[f"visual_encoder.{name}.relative_position_index"] = (
                    module.relative_position_index.clone()
                )
    state["tagging_head.encoder.layer.0.crossattention.self.query.weight"] = torch.zeros(2, 2)
    state["label_embed"] = torch.zeros(3, 2)
    return state


def _adapters(embedder, seed=0):
    generator = torch.Generator().manual_seed(seed)
    adapters = {}
    for name, module in embedder.encoder.named_modules():
        if name.endswith(".attn"):
            dim, r = module.qkv.in_features, dape.LORA_RANK
            key = f"visual_encoder.{name}.qkv"
            adapters[f"{key}.lora_A"] = torch.randn(2 * r, dim, generator=generator).double()
            adapters[f"{key}.lora_B"] = torch.randn(2 * dim, r, generator=generator).double()
    return adapters


def test_ram_names_round_trip_through_the_mapping(embedder):
    state, ignored = dape.ram_to_embedder_state(_ram_state(embedder), None, embedder)
    assert ignored == [
        "label_embed",
        "tagging_head.encoder.layer.0.crossattention.self.query.weight",
    ]
    ours = embedder.state_dict()
    assert list(state) == list(ours) or set(state) == set(ours)
    assert all(torch.equal(state[key], ours[key]) for key in ours)
    # the original Swin downsamples at the end of a stage, timm at the start of the next
    ram = _ram_state(embedder)
    assert "visual_encoder.layers.0.downsample.reduction.weight" in ram
    assert "encoder.layers.1.downsample.reduction.weight" in state


def test_mapping_agrees_with_timms_own_converter_for_original_swin_checkpoints(embedder):
    ram = _ram_state(embedder)
    swin = {
        k.removeprefix("visual_encoder."): v
        for k, v in ram.items()
        if k.startswith("visual_encoder.")
    }
    timm_state = checkpoint_filter_fn(swin, embedder.encoder)
    ours, _ = dape.ram_to_embedder_state(ram, None, embedder)
    encoder = {k.removeprefix("encoder."): v for k, v in ours.items() if k.startswith("encoder.")}
    assert set(encoder) == set(timm_state)
    assert all(torch.equal(encoder[key], timm_state[key]) for key in encoder)


def test_dape_adapters_are_merged_into_query_and_value_rows_only(embedder):
    adapters = _adapters(embedder)
    plain, _ = dape.ram_to_embedder_state(_ram_state(embedder), None, embedder)
    merged, _ = dape.ram_to_embedder_state(_ram_state(embedder), adapters, embedder)
    key = "layers.1.blocks.1.attn.qkv"
    dim = plain[f"encoder.{key}.weight"].shape[1]
    a, b = adapters[f"visual_encoder.{key}.lora_A"], adapters[f"visual_encoder.{key}.lora_B"]
    r = dape.LORA_RANK
    # loralib's MergedLinear with enable_lora=[True, False, True]: a grouped 1x1 convolution
    delta = F.conv1d(a[None], b[..., None], groups=2)[0] / r
    expected = plain[f"encoder.{key}.weight"].clone()
    expected[:dim] += delta[:dim]
    expected[2 * dim :] += delta[dim:]
    assert torch.allclose(merged[f"encoder.{key}.weight"], expected, rtol=0, atol=1e-12)
    assert torch.equal(merged[f"encoder.{key}.weight"][dim : 2 * dim], expected[dim : 2 * dim])
    assert torch.equal(merged[f"encoder.{key}.bias"], plain[f"encoder.{key}.bias"])


def test_merged_adapters_equal_applying_them_at_run_time(embedder):
    """LoRA in train mode adds x A^T B^T / r to the q and v outputs; merging must match."""
    adapters = _adapters(embedder, seed=1)
    merged_state, _ = dape.ram_to_embedder_state(_ram_state(embedder), adapters, embedder)
    merged = dape.ImageEmbedder(tiny.TINY_DAPE).double().eval()
    merged.load_state_dict(merged_state)

    def add_lora(name):
        a = adapters[f"visual_encoder.{name}.qkv.lora_A"]
        b = adapters[f"visual_encoder.{name}.qkv.lora_B"]

        def hook(module, args, output):
            x, dim, r = args[0], module.in_features, dape.LORA_RANK
            q = x @ a[:r].T @ b[:dim].T / r
            v = x @ a[r:].T @ b[dim:].T / r
            return output + torch.cat([q, torch.zeros_like(q), v], dim=-1)

        return hook

    for name, module in embedder.encoder.named_modules():
        if name.endswith(".attn"):
            module.qkv.register_forward_hook(add_lora(name))
    images = torch.stack([photo(80, "astronaut"), photo(80, "coffee")])
    assert torch.allclose(merged(images), embedder(images), rtol=0, atol=1e-10)


def test_embeddings_are_the_projected_tokens_with_their_mean_first(embedder):
    images = torch.stack([photo(96, "astronaut"), photo(96, "coffee")])
    out = embedder(images)
    side = tiny.TINY_DAPE["image_size"] // tiny.TINY_DAPE["patch_size"] // 2
    assert out.shape == (2, 1 + side * side, tiny.TINY_DAPE["embedding_dim"])
    # image_proj is affine, so the first token is the mean of the others
    assert torch.allclose(out[:, 0], out[:, 1:].mean(dim=1), atol=1e-12)
    # resized to the encoder's size and ImageNet-normalised before the Swin
    size = tiny.TINY_DAPE["image_size"]
    pixels = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(dape.IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(dape.IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    tokens = embedder.encoder.forward_features((pixels - mean) / std).flatten(1, 2)
    assert torch.allclose(out[:, 1:], embedder.image_proj(tokens), atol=1e-12)
    assert (out[0] - out[1]).abs().max() > 1e-6


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("visual_encoder.norm.weight"), r"1 missing keys \(encoder.norm.weight\)"),
        (lambda s: s.pop("image_proj.bias"), r"missing keys \(image_proj.bias\)"),
        (
            lambda s: s.update({"visual_encoder.head.weight": torch.zeros(1)}),
            r"1 unexpected keys \(encoder.head.weight\)",
        ),
        (lambda s: s.update({"prompt_proj.weight": torch.zeros(1)}), r"\(prompt_proj.weight\)"),
        (
            lambda s: s.update({"image_proj.weight": torch.zeros(3, 3)}),
            r"shapes \(image_proj.weight \(3, 3\) != \(16, 32\)\)",
        ),
    ],
)
def test_ram_checkpoint_with_a_wrong_key_is_rejected_naming_it(embedder, edit, message):
    state = _ram_state(embedder)
    edit(state)
    with pytest.raises(WeightKeyError, match=message):
        dape.ram_to_embedder_state(state, None, embedder)


def test_ram_checkpoint_for_another_window_size_is_rejected(embedder):
    state = _ram_state(embedder)
    key = "visual_encoder.layers.0.blocks.0.attn.relative_position_index"
    state[key] = torch.zeros(9, 9, dtype=torch.long)
    with pytest.raises(WeightKeyError, match="does not match a window of 4"):
        dape.ram_to_embedder_state(state, None, embedder)


def test_dape_checkpoint_with_a_missing_or_foreign_key_is_rejected_naming_it(embedder):
    adapters = _adapters(embedder)
    del adapters["visual_encoder.layers.1.blocks.0.attn.qkv.lora_B"]
    with pytest.raises(WeightKeyError, match=r"1 missing keys \(visual_encoder.layers.1.blocks"):
        dape.ram_to_embedder_state(_ram_state(embedder), adapters, embedder)
    adapters = _adapters(embedder)
    adapters["visual_encoder.layers.0.blocks.0.attn.proj.weight"] = torch.zeros(1)
    with pytest.raises(WeightKeyError, match=r"unexpected keys \(visual_encoder.layers.0.*proj"):
        dape.ram_to_embedder_state(_ram_state(embedder), adapters, embedder)
    adapters = _adapters(embedder)
    adapters["visual_encoder.layers.0.blocks.0.attn.qkv.lora_A"] = torch.zeros(3, 16)
    with pytest.raises(WeightKeyError, match=r"lora_A/B have shapes \(3, 16\)"):
        dape.ram_to_embedder_state(_ram_state(embedder), adapters, embedder)


def test_released_files_load_strictly(embedder, tmp_path):
    adapters = _adapters(embedder)
    adapters["text_decoder.bert.encoder.layer.0.attention.self.query.lora_A"] = torch.zeros(1)
    torch.save({"model": _ram_state(embedder)}, tmp_path / "ram.pth")
    torch.save(adapters, tmp_path / "dape.pth")
    loaded = dape.load_image_embedder(tmp_path / "ram.pth", tmp_path / "dape.pth", tiny.TINY_DAPE)
    expected, ignored = dape.ram_to_embedder_state(_ram_state(embedder), adapters, embedder)
    assert "text_decoder.bert.encoder.layer.0.attention.self.query.lora_A" in ignored
    assert all(torch.equal(loaded.state_dict()[k], v.float()) for k, v in expected.items())
    assert not any(p.requires_grad for p in loaded.parameters())
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(WeightKeyError, match="not a state dict"):
        dape.read_checkpoint(tmp_path / "list.pth")
