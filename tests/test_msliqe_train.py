"""MS-LIQE training (Eqs. 25-27): the loss, the pairs, exact resumption, and proof that it
learns on an offline synthetic IQA set; `dlmap train-msliqe` and `dlmap evaluate`."""

import csv
import math

import numpy as np
import pytest
import torch
from scipy import stats

from dlmap.cli import main as cli
from dlmap.data import manifests as datasets
from dlmap.data import synthetic_iqa
from dlmap.msliqe import model as msliqe
from dlmap.msliqe import train as msliqe_train
from dlmap.msliqe.pairs import (
    epoch_batches,
    epoch_pairs,
    fidelity_loss,
    pair_labels,
    per_dataset_loss,
    thurstone_probability,
)
from dlmap.msliqe.train import TrainConfig
from dlmap.priors import registry as priors
from dlmap.priors.evaluation import correlations

# A toy CLIP for 64-pixel views: 8 x 8 patches of 8 pixels (what `--clip tiny --crop 64` builds)
SMALL = msliqe.MSLIQEConfig(
    clip=dict(
        msliqe.TINY_CLIP,
        vision_cfg=dict(msliqe.TINY_CLIP["vision_cfg"], image_size=64, patch_size=8),
    ),
    crop=64,
    scales=(1.0,),
    crops_per_scale=1,
)
FROM_SCRATCH = dict(lr=1e-3, batch_size=16, init="random", image_size=64, model=SMALL)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The default synthetic set: 9 photographs x 16 tiles x 6 levels, 64 px."""
    return synthetic_iqa.make_synthetic_set(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory):
    """One tile per photograph (54 images): for the machinery tests."""
    return synthetic_iqa.make_synthetic_set(tmp_path_factory.mktemp("small"), tiles=1)


# --- Eqs. 25-27 -------------------------------------------------------------------------------


def test_labels_probability_and_fidelity_loss_follow_eqs_25_to_27():
    mos_x, mos_y = torch.tensor([0.9, 0.2, 0.5]), torch.tensor([0.1, 0.7, 0.5])
    assert pair_list(pair_labels(mos_x, mos_y)) == [1.0, 0.0, 1.0]  # ties: 1
    q_x = torch.tensor([3.0, 1.0, 2.5], dtype=torch.float64)
    q_y = torch.tensor([1.0, 4.0, 2.5], dtype=torch.float64)
    expected = stats.norm.cdf((q_x - q_y).numpy() / math.sqrt(2.0))
    probability = thurstone_probability(q_x, q_y)
    np.testing.assert_allclose(probability.numpy(), expected, rtol=1e-12)
    p = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    loss = fidelity_loss(p, probability, eps=0.0)
    np.testing.assert_allclose(loss.numpy(), 1 - np.sqrt(np.where(p, expected, 1 - expected)))


def pair_list(tensor):
    return [float(value) for value in tensor]


def test_fidelity_loss_gradient_is_finite_at_certainty_and_matches_finite_differences():
    for p_model in (0.0, 1.0):
        value = torch.tensor([p_model], dtype=torch.float64, requires_grad=True)
        for label in (0.0, 1.0):
            (grad,) = torch.autograd.grad(fidelity_loss(torch.tensor([label]), value).sum(), value)
            assert torch.isfinite(grad).all()

    def loss_of_scores(q):
        probability = thurstone_probability(q[:3], q[3:])
        return fidelity_loss(torch.tensor([1.0, 0.0, 1.0]), probability).sum()

    q = torch.tensor([3.1, 1.2, 2.0, 1.5, 4.4, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss_of_scores, (q,))


def test_each_epoch_pairs_every_training_image_once_within_its_data_set():
    items = [
        datasets.Entry(name, f"{name}{k}", k / 10, None, "", 0, "", "train")
        for name in ("a", "b")
        for k in range(7)
    ] + [datasets.Entry("c", "alone", 0.5, None, "", 0, "", "train")]
    pairs = epoch_pairs(items, seed=3, epoch=5)
    assert sorted(pairs[:, 0]) == list(range(14))  # "c" has no partner: left out
    for x, y in pairs:
        assert x != y and items[x].dataset == items[y].dataset
    np.testing.assert_array_equal(pairs, epoch_pairs(items, seed=3, epoch=5))
    assert not np.array_equal(pairs, epoch_pairs(items, seed=3, epoch=6))


def test_liqe_batches_draw_each_data_set_and_cover_the_largest_once():
    items = [
        datasets.Entry(name, f"{name}{k}", k / 10, None, "", 0, "", "train")
        for name, count in (("a", 10), ("b", 3), ("c", 1))
        for k in range(count)
    ]
    batches, flips, draws = epoch_batches(items, batch_size=8, seed=3, epoch=5, draws_per_image=2)
    assert len(batches) == 3  # "a" (10 images, 4 per step) shown once; "c" (1 image) left out
    for step, flip, draw in zip(batches, flips, draws, strict=True):
        a, b = step
        assert len(a) == 4 and len(b) == 3 and len(flip) == 7  # 8 // 2 sets; "b" is smaller
        assert draw.shape == (7, 2) and ((draw >= 0) & (draw < 1)).all()
        assert {items[i].dataset for i in a} == {"a"} and {items[i].dataset for i in b} == {"b"}
        assert len(set(a)) == 4
    assert set(np.concatenate([step[0] for step in batches])) == set(range(10))
    assert all(len(set(step[1])) == 3 for step in batches)  # distinct within each sub-batch
    again = epoch_batches(items, batch_size=8, seed=3, epoch=5, draws_per_image=2)
    flat = [part for step in batches for part in step] + flips + draws
    flat_again = [part for step in again[0] for part in step] + again[1] + again[2]
    assert all(np.array_equal(x, y) for x, y in zip(flat, flat_again, strict=True))
    with pytest.raises(ValueError, match="fewer than 2 images"):
        epoch_batches(items, batch_size=3, seed=0, epoch=0)


def test_sub_batches_follow_liqes_proportions_over_its_six_sets():
    from dlmap.msliqe.pairs import sub_batch_sizes

    six = ["live", "csiq", "bid", "clive", "koniq10k", "kadid10k"]
    sizes = sub_batch_sizes(six, 48)
    assert sizes == {"live": 4, "csiq": 4, "bid": 4, "clive": 4, "koniq10k": 16, "kadid10k": 16}
    assert sum(sizes.values()) == 48
    assert sub_batch_sizes(six, 48, "equal") == dict.fromkeys(six, 8)
    assert sub_batch_sizes(["live", "koniq10k"], 20) == {"live": 4, "koniq10k": 16}
    assert sub_batch_sizes(["live", "mine"], 20) == {"live": 10, "mine": 10}  # not all LIQE's
    small = sub_batch_sizes(six, 12)  # at least a pair each, even above the batch size
    assert small == {**dict.fromkeys(six[:4], 2), "koniq10k": 4, "kadid10k": 4}


def test_liqe_learning_rate_schedule_is_its_per_epoch_cosine_with_zeros_skipped():
    factors = [msliqe_train.liqe_lr_factor(epoch) for epoch in range(12)]
    expected = [
        (1 + math.cos(math.pi * p / 5)) / 2 for p in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12)
    ]
    assert factors == pytest.approx(expected, abs=1e-15)
    assert min(msliqe_train.liqe_lr_factor(e) for e in range(80)) > 0
    # PyTorch's own CosineAnnealingLR(T_max=5), stepped once more whenever it reaches 0, as
    # LIQE's script does (train_unique_clip_weight.py: its train() and main loop)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5)
    for epoch in range(40):
        if optimizer.param_groups[0]["lr"] == 0:
            scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        assert lr == pytest.approx(msliqe_train.liqe_lr_factor(epoch), abs=1e-12), epoch
        optimizer.step()
        scheduler.step()


def test_training_views_are_one_random_crop_per_level_on_the_grid():
    config = msliqe.MSLIQEConfig(clip=msliqe.TINY_CLIP, crop=64, scales=(1.0, 0.75))
    image = torch.rand(3, 160, 160, dtype=torch.float64)
    views = msliqe.training_views(image, config, [0.0, 0.999])
    assert views.shape == (3, 3, 64, 64)
    fixed = msliqe.test_views(image[None], config)[0]
    assert torch.equal(views[0], fixed[0])  # the top level: the whole image at 64 x 64
    assert torch.equal(views[1], image[:, :64, :64])  # scale 1, position 0
    level = msliqe.pyramid_level(image[None], 0.75, 64)[0]  # 120 px: a 2 x 2 grid of positions
    assert torch.equal(views[2], level[:, 32:96, 32:96])  # the last position
    seen = {
        tuple(msliqe.training_views(image, config, [u, 0.5])[1][0, 0, :2].tolist())
        for u in np.linspace(0, 0.999, 40)
    }
    assert len(seen) == 16  # 160 px at scale 1: 4 x 4 positions, each drawn


def test_the_per_dataset_loss_averages_all_pairs_per_set_then_over_sets():
    q = torch.tensor([3.0, 1.0, 2.0, 4.0, 0.5], dtype=torch.float64)
    mos = torch.tensor([0.9, 0.1, 0.5, 0.2, 0.8], dtype=torch.float64)
    loss = per_dataset_loss(q, mos, [3, 2], eps=0.0)

    def pair_loss(i, j):
        p = float(mos[i] >= mos[j])
        p_model = stats.norm.cdf((q[i] - q[j]).item() / math.sqrt(2.0))
        return 1 - math.sqrt(p * p_model) - math.sqrt((1 - p) * (1 - p_model))

    first = np.mean([pair_loss(0, 1), pair_loss(0, 2), pair_loss(1, 2)])
    assert loss.item() == pytest.approx((first + pair_loss(3, 4)) / 2, rel=1e-12)


def test_liqe_protocol_freezes_the_logit_scale(small_synthetic, tmp_path):
    config = TrainConfig(epochs=1, **FROM_SCRATCH)
    start = msliqe_train.initial_model(config).clip.logit_scale.item()
    msliqe_train.train(config, small_synthetic, tmp_path / "frozen", quiet=True)
    state = torch.load(tmp_path / "frozen" / msliqe_train.FINAL, weights_only=True)["state_dict"]
    assert state["logit_scale"].item() == start
    trained = TrainConfig(epochs=1, freeze_logit_scale=False, **FROM_SCRATCH)
    msliqe_train.train(trained, small_synthetic, tmp_path / "free", quiet=True)
    state = torch.load(tmp_path / "free" / msliqe_train.FINAL, weights_only=True)["state_dict"]
    assert state["logit_scale"].item() != start


def test_the_temperature_is_learned_stored_and_read_by_the_prior(small_synthetic, tmp_path):
    """Eq. 24's tau is learned from the config's 2 (the logit scale stays frozen), stored in
    the final checkpoint's config, and the prior scores with it; frozen on request."""
    config = TrainConfig(epochs=2, **FROM_SCRATCH)
    history = msliqe_train.train(config, small_synthetic, tmp_path / "learned", quiet=True)
    final = torch.load(tmp_path / "learned" / msliqe_train.FINAL, weights_only=True)
    tau = final["config"]["temperature"]
    assert tau != 2.0 and tau == history[-1]["temperature"]
    prior = priors.create_prior("ms-liqe", checkpoint=tmp_path / "learned" / msliqe_train.FINAL)
    assert prior.model.config.temperature == tau
    model = msliqe_train.load_trained(tmp_path / "learned" / msliqe_train.FINAL)
    images = torch.rand(2, 3, 64, 64)
    logits = model.logits(images)
    expected = torch.softmax(logits / tau, dim=-1) @ torch.arange(1.0, 6.0)
    assert torch.allclose(prior(images), expected, atol=1e-6)
    frozen = TrainConfig(epochs=1, learn_temperature=False, **FROM_SCRATCH)
    msliqe_train.train(frozen, small_synthetic, tmp_path / "frozen-tau", quiet=True)
    final = torch.load(tmp_path / "frozen-tau" / msliqe_train.FINAL, weights_only=True)
    assert final["config"]["temperature"] == 2.0


# --- the loop -------------------------------------------------------------------------------


def test_a_resumed_run_continues_exactly_as_an_uninterrupted_one(small_synthetic, tmp_path):
    config = TrainConfig(epochs=3, **FROM_SCRATCH)
    whole = msliqe_train.train(config, small_synthetic, tmp_path / "whole", quiet=True)
    first = msliqe_train.train(
        config, small_synthetic, tmp_path / "parts", stop_after=2, quiet=True
    )
    assert len(first) == 2 and not (tmp_path / "parts" / msliqe_train.FINAL).exists()
    resumed = msliqe_train.train(
        config, small_synthetic, tmp_path / "parts", resume=True, quiet=True
    )
    assert [row["loss"] for row in resumed] == [row["loss"] for row in whole]
    a = torch.load(tmp_path / "whole" / msliqe_train.FINAL, weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "parts" / msliqe_train.FINAL, weights_only=True)["state_dict"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    rows = list(csv.DictReader(open(tmp_path / "parts" / "metrics.csv")))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert {"lr", "loss", "synthetic_srcc", "synthetic_plcc"} <= set(rows[0])
    assert (tmp_path / "parts" / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    changed = TrainConfig(epochs=3, **{**FROM_SCRATCH, "lr": 2e-3})
    with pytest.raises(ValueError, match="another configuration"):
        msliqe_train.train(changed, small_synthetic, tmp_path / "parts", resume=True, quiet=True)
    assert msliqe_train.can_resume(tmp_path / "parts", config)
    assert not msliqe_train.can_resume(tmp_path / "parts", changed)  # the workflow starts anew
    assert not msliqe_train.can_resume(tmp_path / "nowhere", config)
    # a rerun of a finished run (the workflow deletes a job's outputs first) writes them again
    outputs = [
        tmp_path / "parts" / name for name in (msliqe_train.FINAL, "metrics.csv", "metrics.png")
    ]
    for path in outputs:
        path.unlink()
    again = msliqe_train.train(config, small_synthetic, tmp_path / "parts", resume=True, quiet=True)
    assert again == resumed and all(path.is_file() for path in outputs)


def test_a_chain_of_jobs_in_their_own_folders_ends_where_one_long_run_does(
    small_synthetic, tmp_path, capsys
):
    """The workflow's chain (each job in a folder of its own, resuming the previous job's
    last.pt until its last epoch, with data-loading workers) gives the checkpoint of one run."""
    common = [
        "train-msliqe",
        "--manifest",
        str(small_synthetic),
        "--init",
        "random",
        "--clip",
        "tiny",
        "--crop",
        "64",
        "--image-size",
        "64",
        "--scales",
        "1.0",
        "--crops-per-scale",
        "1",
        "--lr",
        "1e-3",
        "--batch-size",
        "32",
        "--epochs",
        "3",
        "--quiet",
    ]
    assert cli.main([*common, "--out", str(tmp_path / "whole")]) == 0
    previous = []
    for start, end in ((0, 1), (1, 2), (2, 3)):
        folder = tmp_path / f"epochs-{start:03d}-{end:03d}"
        workers = ["--workers", "2"] if start == 1 else []
        assert (
            cli.main(
                [*common, "--out", str(folder), "--until-epoch", str(end), *previous, *workers]
            )
            == 0
        )
        previous = ["--resume-from", str(folder / msliqe_train.LAST)]
    last = tmp_path / "epochs-002-003"
    assert not (tmp_path / "epochs-001-002" / msliqe_train.FINAL).exists()
    a = torch.load(tmp_path / "whole" / msliqe_train.FINAL, weights_only=True)
    b = torch.load(last / msliqe_train.FINAL, weights_only=True)
    assert all(torch.equal(a["state_dict"][key], b["state_dict"][key]) for key in a["state_dict"])
    assert a["history"] == b["history"] and len(b["history"]) == 3
    rows = list(csv.DictReader(open(last / "metrics.csv")))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    missing = ["--out", str(tmp_path / "x"), "--resume-from", str(tmp_path / "none.pt")]
    assert cli.main([*common, *missing]) == 2
    assert "--resume-from" in capsys.readouterr().err


@pytest.mark.parametrize(
    "seed, scheme",
    [(0, "per-dataset"), (1, "per-dataset"), (2, "per-dataset"), (0, "partner")],
)
def test_a_tiny_random_clip_learns_the_synthetic_quality_scale(synthetic, tmp_path, seed, scheme):
    """Training from scratch (lr 1e-3; 5e-6 is for fine-tuning OpenAI's CLIP) for 12 short
    epochs reaches held-out SRCC >= 0.7 on photographs it never saw: LIQE's protocol (the
    default; sub-batches of 32, so an epoch shows as many images as the partner scheme's 16
    pairs) on three seeds, and the partner scheme."""
    if scheme == "per-dataset":
        config = TrainConfig(epochs=12, seed=seed, **{**FROM_SCRATCH, "batch_size": 32})
    else:
        settings = dict(pairing="partner", flip=False, freeze_logit_scale=False)
        config = TrainConfig(epochs=12, seed=seed, **FROM_SCRATCH, **settings)
    history = msliqe_train.train(config, synthetic, tmp_path, quiet=True)
    assert history[-1]["loss"] < history[0]["loss"]
    model = msliqe.MSLIQE.from_config(SMALL, tmp_path / msliqe_train.FINAL)
    held_out = [e for e in datasets.read_manifest_resolved(synthetic) if e.split == "test"]
    scores = msliqe_train.predict(model, held_out, config)
    assert correlations(scores, [e.mos for e in held_out])["srcc"] >= 0.7


# --- evaluation and the commands -------------------------------------------------------------


def test_correlations_are_oriented_by_the_priors_direction():
    mos = np.linspace(0, 1, 20)
    assert correlations(mos**3, mos)["srcc"] == pytest.approx(1.0)
    flipped = correlations(-(mos**3), mos, higher_is_better=False)
    assert flipped["srcc"] == pytest.approx(1.0) and flipped["plcc"] > 0.9
    assert math.isnan(correlations(np.ones(20), mos)["srcc"])


def test_cli_trains_installs_and_evaluates_by_name(small_synthetic, tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = [
        "train-msliqe",
        "--manifest",
        str(small_synthetic),
        "--out",
        str(out),
        "--init",
        "random",
        "--clip",
        "tiny",
        "--crop",
        "64",
        "--image-size",
        "64",
        "--scales",
        "1.0",
        "--crops-per-scale",
        "1",
        "--lr",
        "1e-3",
        "--batch-size",
        "32",
        "--epochs",
        "2",
        "--cache",
        str(cache),
        "--quiet",
    ]
    assert cli.main([*common, "--stop-after", "1"]) == 0
    assert "continue with --resume" in capsys.readouterr().out
    assert cli.main([*common, "--resume", "--install"]) == 0
    prior = priors.create_prior("ms-liqe", cache=cache)  # the config comes with the weights
    assert prior.model.config.crop == 64 and prior.model.config.num_views == 2
    table = tmp_path / "eval.csv"
    argv = [
        "evaluate",
        "--prior",
        "ms-liqe",
        "--manifest",
        str(small_synthetic),
        "--out",
        str(table),
        "--size",
        "64",
        "--cache",
        str(cache),
        "--split",
        "all",
        "--quiet",
    ]
    assert cli.main(argv) == 0
    (row,) = list(csv.DictReader(open(table)))
    assert row["dataset"] == "synthetic" and row["count"] == "54" and row["split"] == "all"
    assert -1 <= float(row["srcc"]) <= 1 and "SRCC" in capsys.readouterr().out
    scores = list(csv.DictReader(open(tmp_path / "eval.images.csv")))  # beside the summary
    assert len(scores) == 54 and {r["score_scale"] for r in scores} == {"authors"}
    raw = [float(r["raw_score"]) for r in scores]
    mos = [float(r["mos"]) for r in scores]
    assert correlations(raw, mos)["srcc"] == pytest.approx(float(row["srcc"]))
    assert all(0 < float(r["calibrated_score"]) < 100 for r in scores)
    assert prior.info.calibration_fitted is False  # a toy architecture: provisional constants


@pytest.mark.parametrize(
    "command, message",
    [
        ("train-msliqe --manifest nowhere.csv --out x", "no such file"),
        ("evaluate --prior liq --manifest M --out o.csv", "did you mean"),
        ("evaluate --prior niqe --manifest M --out o.csv --checkpoint c.pt", "takes no checkpoint"),
        ("evaluate --prior niqe --manifest M --out o.csv --split nonsense", "no images in split"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(command, message, small_synthetic, tmp_path, capsys):
    argv = [str(small_synthetic) if part == "M" else part for part in command.split()]
    argv = [str(tmp_path / part) if part in ("x", "o.csv") else part for part in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_resume_without_a_checkpoint_is_a_usage_error(small_synthetic, tmp_path, capsys):
    argv = ["train-msliqe", "--manifest", str(small_synthetic), "--out", str(tmp_path), "--resume"]
    assert cli.main(argv) == 2 and "no last.pt" in capsys.readouterr().err
