"""A subject's whole session in Debian's headless chromium (Selenium): training, keyboard and
click answers, pause, reload and resume, the end; then the export's counts. Skips only where
chromium or chromium-driver is not installed (apt-get install chromium chromium-driver)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from dlmap.compare.counts import read_counts
from dlmap.experiment import export, study
from dlmap.testing.experiment import ServedStudy, write_fake_pairs

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACT = Path(__file__).resolve().parents[1] / "results" / "test-artifacts" / "trial-page.png"
IMAGE_SIZE = (600, 40)  # width, height in image pixels
PIXEL_RATIO = 2  # the page must show each image at IMAGE_SIZE / PIXEL_RATIO CSS pixels

if not (CHROMEDRIVER.is_file() and CHROMIUM.is_file()):
    pytest.skip(
        f"{CHROMEDRIVER} or {CHROMIUM} missing (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.add_argument(f"--force-device-scale-factor={PIXEL_RATIO}")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1200,800")
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def _shown_trial(driver, previous: str | None) -> str:
    """Wait until a trial other than ``previous`` is on screen (or the end); its id."""

    def ready(d):
        if d.find_element(By.ID, "done").is_displayed():
            return "done"
        trial = d.find_element(By.ID, "pair").get_attribute("data-trial")
        visible = d.execute_script("return $('pair').style.visibility") == "visible"
        return trial if trial and trial != previous and visible else False

    return WebDriverWait(driver, 10).until(ready)


def _start(driver) -> None:
    button = driver.find_element(By.ID, "start")
    WebDriverWait(driver, 10).until(lambda d: button.is_enabled())  # the script has run
    button.click()


def _stored(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT trial, chosen, input, device_pixel_ratio FROM answers ORDER BY trial"
        ).fetchall()


def test_subject_session_in_chromium_gives_the_expected_counts(tmp_path, browser):
    pairs = write_fake_pairs(tmp_path, ["beta", "alpha", "gamma"], k=2, size=IMAGE_SIZE)
    db = tmp_path / "study.sqlite"
    study.create_study(db, pairs, tmp_path / "images", training=2, seed=5)
    with ServedStudy(db) as served:
        # The experimenter adds a subject on their page and hands out the private link.
        browser.get(f"{served.url}/admin/{served.admin_token}")
        browser.find_element(By.NAME, "name").send_keys("<script>alert(1)</script>")
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        link = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.CLASS_NAME, "link"))
        assert browser.find_element(By.CLASS_NAME, "name").text == "<script>alert(1)</script>"
        browser.get(link.get_attribute("href"))
        assert "alert(1)" in browser.find_element(By.ID, "subject-name").text  # shown, not run
        _start(browser)
        body = browser.find_element(By.TAG_NAME, "body")

        trial = None
        for _ in range(2):  # the training block, by keyboard
            trial = _shown_trial(browser, trial)
            assert browser.find_element(By.ID, "progress").text.startswith("Training")
            body.send_keys(Keys.ARROW_LEFT)
        trial = _shown_trial(browser, trial)
        assert browser.find_element(By.ID, "progress").text == "Comparison 1 of 6"
        left = browser.find_element(By.ID, "left")
        css_width = browser.execute_script(
            "return arguments[0].getBoundingClientRect().width", left
        )
        assert css_width == IMAGE_SIZE[0] / PIXEL_RATIO  # one image pixel per screen pixel
        assert not browser.find_element(By.ID, "notice").is_displayed()
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACT))
        body.send_keys(Keys.ARROW_RIGHT)
        trial = _shown_trial(browser, trial)
        browser.find_element(By.ID, "left").click()
        trial = _shown_trial(browser, trial)

        # A pause hides the images and ignores the keys; resuming shows the same trial.
        browser.find_element(By.ID, "pause").click()
        assert browser.find_element(By.ID, "paused").is_displayed()
        body.send_keys(Keys.ARROW_LEFT)
        assert len(_stored(db)) == 4
        browser.find_element(By.ID, "resume").click()
        assert browser.find_element(By.ID, "pair").get_attribute("data-trial") == trial
        browser.find_element(By.ID, "right").click()
        trial = _shown_trial(browser, trial)

        # Closing and reopening the link resumes at the next unanswered trial.
        browser.refresh()
        _start(browser)
        body = browser.find_element(By.TAG_NAME, "body")  # a new page
        trial = _shown_trial(browser, None)
        assert browser.find_element(By.ID, "progress").text == "Comparison 4 of 6"
        browser.set_window_size(500, 800)  # too narrow for both images side by side
        WebDriverWait(browser, 5).until(lambda d: d.find_element(By.ID, "notice").is_displayed())
        browser.set_window_size(1200, 800)
        for key in (Keys.ARROW_LEFT, Keys.ARROW_RIGHT, Keys.ARROW_LEFT):
            body.send_keys(key)
            trial = _shown_trial(browser, trial)
        assert trial == "done"

    stored = _stored(db)
    assert len(stored) == 2 + 6
    assert {row[2] for row in stored} == {"key", "click"}
    assert all(row[3] == PIXEL_RATIO for row in stored)
    summary = export.export_study(db, tmp_path / "export")
    names, counts = read_counts(tmp_path / "export" / "counts.csv")
    assert names == ["alpha", "beta", "gamma"] and summary["counted_answers"] == 6
    connection = study.open_study(db)
    expected = export.count_matrix(export.answers(connection), names)
    connection.close()
    assert np.array_equal(counts, expected)
    assert np.array_equal(counts + counts.T, 2 * (1 - np.eye(3)))  # each pair shown k=2 times
