"""The web page (GET /) end to end in headless Chromium (Debian's `chromium` + `chromium-driver`).

Submits a job through the form, watches the progress bar (fed by the SSE stream) reach 100 %,
checks that the <video> element loads metadata with the requested duration, saves a screenshot to
tests/artifacts/, then cancels and deletes jobs from the history list.
Needs: apt-get install chromium chromium-driver; pip install selenium (dev extra).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.integration.eco_support import Service, service_fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]


service = service_fixture("web")  # a gateway with auth on and a key for it


ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,1400",
)
T = TypeVar("T")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service as DriverService

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="wanserve-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never downloads anything.
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(fn: Callable[[], T | None], timeout: float, what: str, every: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _open_page(browser: Any, service: Service) -> None:
    from selenium.webdriver.common.by import By

    browser.get(service.url + "/")
    stored = browser.execute_script("return localStorage.getItem('wanserve.apiKey')")
    if service.api_key and stored != service.api_key:  # typed once, then kept in localStorage
        # Without a key the page meets 401s and opens the key box itself.
        wait_until(
            lambda: browser.execute_script("return document.getElementById('auth-box').open"), 20, "key box"
        )
        _fill(browser, "api-key", service.api_key)
        browser.find_element(By.CSS_SELECTOR, "#auth-form button[type=submit]").click()
        browser.refresh()
        assert browser.execute_script("return localStorage.getItem('wanserve.apiKey')") == service.api_key
    wait_until(
        lambda: browser.execute_script(
            "return [...document.querySelectorAll('#model option')].map(o => o.value)"
        ),
        20,
        "the model list from /v1/models",
    )


def _fill(browser: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    el = browser.find_element(By.ID, element_id)
    el.clear()
    el.send_keys(value)


def test_submit_progress_video_and_history(browser: Any, service: Service) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open_page(browser, service)
    Select(browser.find_element(By.ID, "model")).select_by_value("tiny-ti2v")
    sizes = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#size option")]
    assert "64x32" in sizes  # filled from the model's constraints
    examples = browser.find_elements(By.CSS_SELECTOR, "#examples .example")
    assert examples, "the served model's example prompts are offered"
    first = examples[0].text
    examples[0].click()
    assert browser.find_element(By.ID, "prompt").get_attribute("value") == first
    Select(browser.find_element(By.ID, "size")).select_by_value("64x32")
    _fill(browser, "prompt", "a lighthouse in a storm, browser test")
    _fill(browser, "seed", "99")
    browser.find_element(By.CSS_SELECTOR, "#advanced summary").click()
    _fill(browser, "num_frames", "17")
    _fill(browser, "num_inference_steps", "6")
    browser.find_element(By.ID, "submit").click()

    video_id = wait_until(lambda: browser.find_element(By.ID, "current-id").text, 20, "the job id")
    seen: set[int] = set()

    def bar_done() -> bool:
        value = browser.execute_script("return document.getElementById('progress').value")
        seen.add(int(value))
        return bool(int(value) == 100)

    wait_until(bar_done, 180, "the progress bar to reach 100 %", every=0.02)
    assert browser.find_element(By.ID, "current-status").text == "completed"
    assert len(seen) >= 2, f"the bar only showed {sorted(seen)}"

    # The finished video plays inline: metadata loads and the duration is frames / fps.
    fps = httpx.get(f"{service.url}/v1/videos/{video_id}", headers=service.headers).json()["parameters"][
        "fps"
    ]
    meta = wait_until(
        lambda: browser.execute_script(
            "const v = document.getElementById('player');"
            "return v.readyState >= 1 ? {d: v.duration, w: v.videoWidth, h: v.videoHeight, e: v.error} : null"
        ),
        30,
        "<video> metadata",
    )
    assert meta["e"] is None
    assert meta["d"] == pytest.approx(17 / fps, abs=0.5 / fps)
    assert (meta["w"], meta["h"]) == (64, 32)
    links = browser.find_element(By.ID, "download-video").get_attribute("href")
    assert links and (video_id in links or links.startswith("blob:") or "sig=" in links)

    wait_until(
        lambda: browser.execute_script("return document.getElementById('player').readyState >= 2"),
        30,
        "the first video frame",
    )
    browser.execute_script(
        "const v = document.getElementById('player'); v.pause(); v.currentTime = v.duration / 2;"
        "v.scrollIntoView({block: 'center'});"
    )
    wait_until(
        lambda: browser.execute_script("return !document.getElementById('player').seeking"), 10, "seek"
    )
    time.sleep(0.3)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web_browser.png"))
    assert (ARTIFACTS / "web_browser.png").stat().st_size > 10_000

    # History: the job is listed as completed; deleting it removes it (server and list).
    row = f"#history tr[data-id='{video_id}']"
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, row), 15, "the history row")
    assert "completed" in browser.find_element(By.CSS_SELECTOR, row).text
    browser.find_element(By.XPATH, f"//tr[@data-id='{video_id}']//button[text()='delete']").click()
    browser.switch_to.alert.accept()
    wait_until(lambda: not browser.find_elements(By.CSS_SELECTOR, row), 15, "the row to disappear")
    assert httpx.get(f"{service.url}/v1/videos/{video_id}", headers=service.headers).status_code == 404


def test_cancel_from_the_page_and_errors_shown(browser: Any, service: Service) -> None:
    from selenium.webdriver.common.by import By

    _open_page(browser, service)
    _fill(browser, "prompt", "a long one to cancel")
    browser.find_element(By.CSS_SELECTOR, "#advanced summary").click()
    _fill(browser, "num_frames", "17")
    _fill(browser, "num_inference_steps", "50")
    browser.find_element(By.ID, "submit").click()
    video_id = wait_until(lambda: browser.find_element(By.ID, "current-id").text, 20, "the job id")
    browser.find_element(By.ID, "current-cancel").click()
    wait_until(
        lambda: browser.find_element(By.ID, "current-status").text == "cancelled",
        60,
        "the job to be cancelled",
    )
    status = httpx.get(f"{service.url}/v1/videos/{video_id}", headers=service.headers).json()["status"]
    assert status == "cancelled"

    # The form checks 4n+1 frames itself; a request the server refuses shows its problem detail.
    _fill(browser, "num_frames", "4")
    assert not browser.execute_script("return document.getElementById('create-form').checkValidity()")
    _fill(browser, "num_frames", "17")
    _fill(browser, "seed", str(2**40))  # above the server's bound
    browser.find_element(By.ID, "submit").click()
    err = wait_until(lambda: browser.find_element(By.ID, "form-error").text, 15, "the form error message")
    assert "seed" in err
    httpx.delete(f"{service.url}/v1/videos/{video_id}", headers=service.headers)

    severe = [
        e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "/v1/videos" not in e["message"]
    ]
    assert not severe, severe


def test_live_preview_shown_while_the_job_runs(
    browser: Any, service: Service, worker_factory: Callable[..., Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    # the demo model has latent-to-RGB factors; 30 steps of >= 0.1 s, a preview at most every 0.2 s
    worker_factory("wanserve-demo", timeout=300, debug_step_delay_s=0.1, preview_every_s=0.2)
    _open_page(browser, service)
    wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#model option[value='wanserve-demo']"),
        20,
        "the demo model in the list",
    )
    Select(browser.find_element(By.ID, "model")).select_by_value("wanserve-demo")
    _fill(browser, "prompt", "a red circle moves slowly to the left")
    if not browser.execute_script("return document.getElementById('advanced').open"):
        browser.find_element(By.CSS_SELECTOR, "#advanced summary").click()
    _fill(browser, "num_frames", "9")
    _fill(browser, "num_inference_steps", "30")
    assert not browser.find_element(By.ID, "preview").get_attribute("src")
    browser.find_element(By.ID, "submit").click()
    video_id = wait_until(lambda: browser.find_element(By.ID, "current-id").text, 20, "the job id")

    shown = wait_until(
        lambda: browser.execute_script(
            "const img = document.getElementById('preview');"
            "const box = document.getElementById('preview-box');"
            "return !box.hidden && img.src.startsWith('data:image/webp;base64,') && img.complete"
            "  && img.naturalWidth > 0 ? {w: img.naturalWidth, h: img.naturalHeight,"
            "  status: document.getElementById('current-status').textContent,"
            "  caption: document.getElementById('preview-caption').textContent} : null"
        ),
        120,
        "a live preview image on the page",
        every=0.02,
    )
    assert shown["status"] == "in_progress", shown  # seen while the job runs, not after
    assert shown["h"] == 128 and shown["w"] == 4 * 128  # four 128 px frames side by side
    assert shown["caption"].startswith("preview at step ")
    browser.execute_script("document.getElementById('preview').scrollIntoView({block: 'center'})")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web_preview.png"))

    wait_until(
        lambda: browser.find_element(By.ID, "current-status").text == "completed", 120, "the job to complete"
    )
    wait_until(
        lambda: browser.execute_script(
            "return document.getElementById('preview-box').hidden"
            "  && !document.getElementById('result').hidden"
        ),
        30,
        "the player to replace the preview",
    )
    httpx.delete(f"{service.url}/v1/videos/{video_id}", headers=service.headers)
