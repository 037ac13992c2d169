"""The paper's test-image selection (Sec. IV-A): shares, rules, exclusions, preprocessing."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from dlmap import images
from dlmap.data import testset
from dlmap.data.manifests import Entry


def _pool(tmp_path, name, count, side=40, low=0):
    folder = tmp_path / name
    folder.mkdir()
    entries = []
    for index in range(count):
        path = folder / f"img{index:03d}.png"
        Image.fromarray(np.full((side, side + 8, 3), index % 250, np.uint8)).save(path)
        mos = 0.1 if index < low else 0.5 + index / (4 * count)
        entries.append(Entry(name, str(path), mos, None, "", mos, "0-1"))
    return entries


@pytest.fixture
def pools(tmp_path):
    return {
        "clive": _pool(tmp_path, "clive", 20, low=3),
        "koniq10k": _pool(tmp_path, "koniq10k", 30),
        "spaq": _pool(tmp_path, "spaq", 25, side=60),
    }


def test_equal_shares_per_data_set_seeded_and_ids_by_position(pools):
    rules = testset.SelectionRules(count=10, seed=3)
    selected, _ = testset.select_test_images(pools, rules)
    assert [r["id"] for r in selected] == [f"{i:04d}" for i in range(10)]
    per_set = [sum(r["dataset"] == d for r in selected) for d in pools]
    assert per_set == [4, 3, 3]
    assert testset.select_test_images(pools, rules)[0] == selected
    other, _ = testset.select_test_images(pools, testset.SelectionRules(count=10, seed=4))
    assert other != selected
    assert len({r["image"] for r in selected}) == 10


def test_rules_and_the_exclude_list_are_applied_and_recorded(pools, tmp_path):
    hand = f"koniq10k:{pools['koniq10k'][0].image.split('/')[-1]}"
    rules = testset.SelectionRules(count=60, exclude=[hand], min_mos=0.2, min_side=50)
    with pytest.raises(ValueError, match="clive: 0 eligible images of 20"):
        testset.select_test_images(pools, rules)  # every CLIVE fake is 40 px: all excluded
    rules = testset.SelectionRules(count=45, exclude=[hand], min_mos=0.2)
    selected, excluded = testset.select_test_images(pools, rules)
    reasons = {(e["dataset"], e["reason"].split(" (")[0]) for e in excluded}
    assert reasons == {("clive", "extremely low quality"), ("koniq10k", "excluded by hand")}
    assert not {r["image"] for r in selected} & {e["image"] for e in excluded}
    path = tmp_path / "selection.csv"
    testset.write_selection(selected, excluded, rules, path)
    rows = list(csv.DictReader(path.open()))
    assert [r["id"] for r in rows] == [r["id"] for r in selected]
    record = json.loads((tmp_path / "selection.csv.json").read_text())
    assert record["rules"]["exclude"] == [hand] and len(record["excluded"]) == 4
    assert record["per_dataset"] == {"clive": 15, "koniq10k": 15, "spaq": 15}


def test_too_few_images_name_the_data_set(pools):
    with pytest.raises(ValueError, match="clive: 17 eligible images of 20"):
        testset.select_test_images(pools, testset.SelectionRules(count=60))
    with pytest.raises(ValueError, match="min_mos"):
        testset.SelectionRules(min_mos=20)


def test_preprocess_is_bicubic_resize_and_centre_crop(pools, tmp_path):
    source = pools["spaq"][7].image
    testset.preprocess(source, tmp_path / "0007.png", size=32)
    result = images.load_image(tmp_path / "0007.png", size=None)
    assert tuple(result.shape) == (3, 32, 32)
    expected = images.to_uint8(images.load_image(source, size=32))
    assert np.array_equal(images.to_uint8(result), expected)
