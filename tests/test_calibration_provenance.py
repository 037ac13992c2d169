"""Eq. 21's constants belong to the checkpoint they were fitted for: a trained MS-LIQE gets its
own, recorded with its sha256; constants fitted for other weights stay provisional (early
stopping off, the note printed); the shipped sets say which checkpoint they came from."""

import json
from pathlib import Path

import pytest
import torch
from helpers import photo

from dlmap.cli import main as cli
from dlmap.files import sha256_file
from dlmap.msliqe.model import MSLIQE, TINY_CLIP, MSLIQEConfig, MSLIQEPrior
from dlmap.priors import calibration
from dlmap.priors import registry as priors
from dlmap.priors.specs import PRIOR_SPECS
from dlmap.weights import cache as weights

TINY = MSLIQEConfig(clip=TINY_CLIP)


def checkpoint(path, seed):
    torch.manual_seed(seed)
    torch.save(MSLIQE.from_config(TINY).clip.state_dict(), path)
    return path


def fit_for(digest, xi3=3.1):
    rng = torch.Generator().manual_seed(0)
    raw = (1 + 4 * torch.rand(60, generator=rng, dtype=torch.float64)).tolist()
    mos = [1 / (1 + pow(2.718281828, -(r - xi3) / 0.4)) for r in raw]
    return calibration.fit_logistic(raw, mos, source="live.csv", checkpoint_sha256=digest)


def test_a_checkpoint_gets_only_the_constants_fitted_for_it(tmp_path):
    first, second = checkpoint(tmp_path / "a.pt", 0), checkpoint(tmp_path / "b.pt", 1)
    prior = MSLIQEPrior(checkpoint=first, config=TINY)
    digest = sha256_file(first)
    assert prior.info.checkpoint_sha256 == digest
    # the authors' constants: their checkpoint is not published, so they are provisional
    assert not prior.info.calibration_fitted
    assert prior.info.calibration_source.startswith("provisional: the paper's authors'")

    own = calibration.apply_fit(prior.info, fit_for(digest), "fitted by the workflow")
    assert own.calibration_fitted and own.xi3 == pytest.approx(3.1, abs=1e-3)
    assert digest[:12] in own.calibration_source

    other = MSLIQEPrior(checkpoint=second, config=TINY).info
    stale = calibration.apply_fit(other, fit_for(digest))
    assert not stale.calibration_fitted and stale.xi3 == other.xi3  # constants not taken
    assert stale.calibration_source.startswith("provisional:")
    assert digest[:12] in stale.calibration_source
    assert sha256_file(second)[:12] in stale.calibration_source
    unrecorded = calibration.apply_fit(other, fit_for(""))
    assert not unrecorded.calibration_fitted
    assert "an unrecorded checkpoint" in unrecorded.calibration_source


def test_priors_with_catalogued_weights_take_any_fit():
    """pyiqa's and the hand-made priors load pinned weights (or none): no digest to match."""
    info = priors.prior_info("colorfulness")
    fitted = calibration.apply_fit(info, fit_for(""))
    assert fitted.calibration_fitted and fitted.xi3 == pytest.approx(3.1, abs=1e-3)


def test_cli_calibrate_records_the_installed_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    scores = tmp_path / "scores.csv"
    scores.write_text("score,mos\n" + "".join(f"{1 + i / 10},{i / 40}\n" for i in range(40)))
    argv = ["calibrate", "--prior", "ms-liqe", "--scores", str(scores)]
    argv += ["--out", str(tmp_path / "fit.json")]
    assert cli.main(argv) == 2  # no checkpoint installed: nothing to tie the constants to
    assert "ms_liqe.pt" in capsys.readouterr().err
    installed = tmp_path / "cache" / "ms-liqe" / "ms_liqe.pt"
    installed.parent.mkdir(parents=True)
    checkpoint(installed, 0)
    assert cli.main(argv) == 0
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["checkpoint_sha256"] == sha256_file(installed)
    prior = priors.create_prior("ms-liqe", config=TINY)
    assert prior.info.calibration_fitted and prior.info.xi3 == fit["xi3"]
    assert prior.calibrated(photo(224, "astronaut", torch.float32)[None]).shape == (1,)

    checkpoint(installed, 1)  # retrained: the stored constants no longer apply
    prior = priors.create_prior("ms-liqe", config=TINY)
    assert not prior.info.calibration_fitted and prior.info.xi3 != fit["xi3"]
    assert cli.main([*argv, "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err
    wrong = ["calibrate", "--prior", "colorfulness", "--scores", str(scores)]
    assert cli.main([*wrong, "--out", str(tmp_path / "c.json"), "--checkpoint", "x.pt"]) == 2
    assert "applies to ms-liqe" in capsys.readouterr().err


def test_every_shipped_constant_set_names_its_checkpoint():
    """docs/priors.md's table: fitted sets name the checkpoint they were fitted for; the
    UNIQUE and MS-LIQE sets, fitted for checkpoints dlmap does not load, are provisional."""
    from dlmap.priors.specs import PRIOR_SPECS

    for name in ("musiq", "liqe-mix"):
        assert PRIOR_SPECS[name].calibration_fitted
        assert "fitted on LIVE for pyiqa's" in PRIOR_SPECS[name].calibration_source
        assert PRIOR_SPECS[name].constants_for.startswith("pyiqa's")
    assert not PRIOR_SPECS["unique"].calibration_fitted
    assert "UNIQUE.pt" in PRIOR_SPECS["unique"].calibration_source
    assert not MSLIQEPrior.info.calibration_fitted
    assert "not published" in MSLIQEPrior.info.calibration_source
    documented = (Path(__file__).parents[1] / "docs" / "priors.md").read_text()
    assert "\n".join(calibration.constants_table()) in documented.split("Whose constants")[1], (
        "docs/priors.md's constants table is out of date: paste `dlmap priors constants` there"
    )


def test_priors_constants_prints_the_table_the_docs_embed(capsys):
    assert cli.main(["priors", "constants"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == calibration.constants_table()
    assert len(printed) == 2 + len(PRIOR_SPECS)  # header, rule, one row per spec
