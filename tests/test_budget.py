"""The enhancement stage's cost formula (dlmap.workflow.budget): job runtimes and the paper's
GPU-hour projection follow from the measured constants, and bad constants are refused."""

from pathlib import Path

import pytest
import yaml

from dlmap.errors import InputError
from dlmap.workflow import budget, plan

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())


def test_job_runtimes_follow_the_formula():
    costs = budget.GpuCosts(
        iteration_seconds=2.0, inversion_seconds=1.0, load_seconds=60.0, margin=1.5
    )
    # 25 images x 40 iterations x 2 s + 60 s load = 2060 s; x 1.5 = 3090 s = 51.5 -> 52 min
    assert budget.enhance_job_minutes(25, 40, costs) == 52
    assert budget.invert_job_minutes(25, costs) == 3  # (60 + 25) x 1.5 = 127.5 s
    assert budget.gpu_gib(5, budget.GpuCosts(weights_gib=7.0, activation_gib=2.0)) == 17.0
    assert budget.host_mem_mb(budget.GpuCosts(host_gib=16.0, margin=1.5)) == 25000
    assert budget.enhance_job_minutes(25, 40, costs, attempt=2) == 103  # a retry asks twice


def test_scoring_pairs_and_training_follow_the_formula():
    costs = budget.GpuCosts(score_seconds=0.5, train_seconds=0.01, load_seconds=60.0, margin=2.0)
    assert budget.score_job_minutes(1000, costs) == 19  # (60 + 500) x 2 = 1120 s = 18.7 min
    # 10 images x (4 outputs embedded + 6 pairs) x 0.5 s = 50 s; (60 + 50) x 2 = 220 s
    assert budget.pairs_job_minutes(10, 4, costs) == 4
    # 80 epochs x 6000 images x 0.01 s = 4800 s; (60 + 4800) x 2 = 9720 s = 162 min
    assert budget.train_job_minutes(6000, 80, costs) == 162
    assert budget.job_minutes(0.0, budget.GpuCosts(load_seconds=1.0, margin=1.0)) == 1


def test_the_projection_counts_every_prior_image_and_iteration_of_the_config():
    costs = budget.GpuCosts(iteration_seconds=1.0, inversion_seconds=1.0)
    hours = plan.project_gpu_hours(CONFIG, costs)
    images, iters, priors = CONFIG["images"]["count"], CONFIG["solver"]["iters"], CONFIG["priors"]
    main = next(value for stage, value in hours.items() if stage.startswith("MAP"))
    assert main == pytest.approx(len(priors) * images * iters / 3600)
    doubled = plan.project_gpu_hours(CONFIG, budget.GpuCosts(2.0, 1.0))
    assert sum(doubled.values()) > 1.9 * main  # the MAP iterations dominate
    assert next(v for s, v in hours.items() if s.startswith("inversions")) == images / 3600


@pytest.mark.parametrize("field", ["iteration_seconds", "margin", "host_gib", "train_seconds"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "fast", True])
def test_a_cost_that_is_not_a_positive_number_is_refused_naming_it(field, value):
    with pytest.raises(InputError, match=f"gpu_costs.{field} must be a positive number"):
        budget.GpuCosts(**{field: value})


def test_the_projection_counts_the_latent_ablations_the_workflow_makes():
    """config.yaml's ablations make five latent runs (latent-map, latent-direct, vanilla SD2,
    and the bdia and belm bijections): the projection counts exactly those, from the function
    the workflow's rules read."""
    from dlmap.workflow.plan import ablation_variants, latent_variants

    assert latent_variants(CONFIG) == [
        "latent-map",
        "latent-direct",
        "vanilla",
        "bijection-bdia",
        "bijection-belm",
    ]
    assert set(latent_variants(CONFIG)) <= set(ablation_variants(CONFIG))
    costs = budget.GpuCosts(iteration_seconds=1.0, inversion_seconds=1.0)
    (stage, hours) = next(
        (s, v)
        for s, v in plan.project_gpu_hours(CONFIG, costs).items()
        if s.startswith("ablations")
    )
    per_image = CONFIG["solver"]["iters"] + 1  # iterations and one inversion, 1 s each
    assert hours == pytest.approx(5 * CONFIG["ablations"]["images"] * per_image / 3600)
    fewer = {**CONFIG, "ablations": {**CONFIG["ablations"], "bijections": []}}
    assert len(latent_variants(fewer)) == 3
    assert "bijection-bdia" in stage


def test_msliqe_trains_as_a_chain_of_jobs_each_under_the_walltime():
    costs = budget.GpuCosts(train_seconds=0.02, load_seconds=120.0, margin=1.5)
    epoch = 6 * 10125 * 0.02  # config.yaml: six sets, KADID-10k the largest: 1215 s
    segments = budget.train_segments(80, epoch, costs, 720)
    assert segments == [(0, 23), (23, 46), (46, 69), (69, 80)]
    minutes = [budget.job_minutes((end - start) * epoch, costs) for start, end in segments]
    assert max(minutes) <= 720 and minutes[0] == 702  # (120 + 23 x 1215) x 1.5 / 60
    assert budget.job_minutes(24 * epoch, costs) > 720  # one epoch more would not fit
    assert budget.train_segments(4, 1.0, costs, 720) == [(0, 4)]  # a toy run: one job
    with pytest.raises(InputError, match="one MS-LIQE epoch needs a job of 4 minutes"):
        budget.train_segments(80, 1.0, costs, 2)


def test_a_retry_asks_for_more_time_but_never_past_the_walltime():
    assert budget.capped(306, 720) == 306 and budget.capped(1404, 720) == 720
    assert budget.capped(1404, None) == 1404
