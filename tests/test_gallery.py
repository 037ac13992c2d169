"""The report's gallery (dlmap.figures.gallery) from real `dlmap enhance` records: exact pixels,
every prior's scores and history, and, in Debian's headless chromium, images that load, a wipe
slider that moves and outputs that can be picked."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import photo_png
from PIL import Image

from dlmap.figures.gallery import GalleryItem, read_enhancement, write_gallery

FAST = ["--backbone", "tiny-seesr", "--size", "32", "--iters", "2", "--steps", "4", "--quiet"]
PRIORS = ("sharpness", "colorfulness")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACT = Path(__file__).resolve().parents[1] / "results" / "test-artifacts" / "gallery.png"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Two photographs, each enhanced by two priors; the page and its items."""
    root = tmp_path_factory.mktemp("gallery")
    inputs = [photo_png(root / "in", name, size=32) for name in ("astronaut", "coffee")]
    for prior in PRIORS:
        code = _enhance(inputs, root / prior, prior)
        assert code == 0
    items = [
        GalleryItem(p.stem, p, [read_enhancement(root / prior, p.stem) for prior in PRIORS])
        for p in inputs
    ]
    page = write_gallery(items, root / "gallery.html", "dlmap test gallery", reduced=True)
    return page, items


def _enhance(inputs, out, prior) -> int:
    from dlmap.cli import main as cli

    return cli.main(["enhance", *map(str, inputs), "--out", str(out), "--prior", prior, *FAST])


def _embedded(page: Path) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page.read_text())
    ]


def test_the_page_embeds_every_input_and_output_byte_for_byte(gallery):
    page, items = gallery
    embedded = _embedded(page)
    files = [
        p.read_bytes()
        for item in items
        for p in (item.input, *(e.image for e in item.enhancements))
    ]
    assert embedded == files  # input, then each prior's x*, per image, in order
    assert all(e.image.name.endswith(".x.png") for item in items for e in item.enhancements)


def test_scores_and_history_come_from_the_records(gallery):
    page, items = gallery
    text = page.read_text()
    for item in items:
        for enhancement in item.enhancements:
            record = json.loads(enhancement.image.with_name(f"{item.image_id}.json").read_text())
            final = record["final"]["x"]
            assert enhancement.final == final["score"]
            assert enhancement.raw_final == final["raw_score"]
            assert enhancement.history == [step["score"] for step in record["history"]]
            assert len(enhancement.history) == 2  # one entry per iteration (--iters 2)
            assert f"&rarr; {final['score']:.3g}" in text
    assert text.count("<polyline") == len(items) * len(PRIORS)
    assert "REDUCED SETTINGS" in text


def test_names_are_escaped_and_an_empty_gallery_is_refused(gallery, tmp_path):
    _, items = gallery
    item = items[0]
    hostile = GalleryItem('<img src=x onerror="alert(1)">', item.input, item.enhancements)
    page = write_gallery([hostile], tmp_path / "g.html", "a <b>title</b>")
    text = page.read_text()
    assert "<img src=x" not in text and "&lt;img src=x" in text
    assert "<b>title</b>" not in text
    with pytest.raises(ValueError, match="at least one image"):
        write_gallery([], tmp_path / "empty.html", "empty")
    assert not (tmp_path / "empty.html").exists()


@pytest.mark.skipif(
    not (CHROMEDRIVER.is_file() and CHROMIUM.is_file()),
    reason=f"{CHROMEDRIVER} or {CHROMIUM} missing (apt-get install chromium chromium-driver)",
)
def test_in_chromium_images_load_the_wipe_moves_and_an_output_can_be_picked(gallery):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page, items = gallery
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1100,1200")
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(page.as_uri())
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        assert len(loaded) == len(items) * (2 + len(PRIORS)) and all(loaded)  # + the wipe's
        section = driver.find_elements(By.CSS_SELECTOR, "section.item")[0]
        after = section.find_element(By.CSS_SELECTOR, "img.after")
        figures = section.find_elements(By.CSS_SELECTOR, ".strip figure")
        assert after.get_attribute("src") == figures[0].find_element(
            By.TAG_NAME, "img"
        ).get_attribute("src")
        assert "50%" in after.value_of_css_property("clip-path")
        wipe = section.find_element(By.CSS_SELECTOR, "input.wipe")
        ActionChains(driver).click_and_hold(wipe).move_by_offset(
            -wipe.size["width"] // 3, 0
        ).release().perform()
        value = int(wipe.get_attribute("value"))
        assert value < 30
        assert f"{value}%" in after.value_of_css_property("clip-path")
        figures[1].click()
        assert after.get_attribute("src") == figures[1].find_element(
            By.TAG_NAME, "img"
        ).get_attribute("src")
        assert section.find_element(By.CSS_SELECTOR, ".chosen").text == figures[1].get_attribute(
            "data-name"
        )
        assert "selected" in figures[1].get_attribute("class")
        history = section.find_element(By.CSS_SELECTOR, "svg.history")
        assert not history.is_displayed()
        section.find_element(By.TAG_NAME, "summary").click()
        assert history.is_displayed()
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACT))
    finally:
        driver.quit()
    shot = np.asarray(Image.open(io.BytesIO(ARTIFACT.read_bytes())).convert("RGB"), dtype=float)
    assert shot.std() > 20  # a page with photographs on it, not a blank one
