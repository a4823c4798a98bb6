"""`ecomrlve play`: the page's contract over HTTP (fast), and end to end in headless Chromium
(slow suite).

The browser test needs Debian's `chromium` and `chromium-driver` (apt-get install chromium chromium-driver) and
selenium (pip); skipped cleanly without them. The browser may reach only 127.0.0.1 (host
resolver rules), and Selenium Manager is never invoked (explicit binary and driver paths).
Screenshots go to a tmp dir, or to $ECOMRLVE_SCREENSHOT_DIR when set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def play_url():
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from ecomrlve.catalog_service import Catalog

    from ecomrlve.actors.openenv_server import start_background
    from ecomrlve.actors.play import PlayConfig, create_play_app

    app = create_play_app(PlayConfig(), catalog=Catalog.synthetic(n_products=3000, seed=0))
    server, thread, url = start_background(app)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture()
def shots(tmp_path) -> Path:
    out = Path(os.environ.get("ECOMRLVE_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_page_requests_only_what_exists_and_waits_for_an_episode(play_url):
    """No free-text answer.env, no /favicon.ico or /api/state requests, Send and Submit
    disabled until an episode exists, tool results never cut."""
    import re

    import requests

    s = requests.Session()
    html = s.get(play_url + "/static/play.html", timeout=10).text
    assert '<link rel="icon" href="data:,">' in html  # the browser asks for no /favicon.ico
    for button in ("add-call", "send-turn", "submit-answer", "send-raw"):
        assert re.search(rf'<button id="{button}" type="button" disabled', html), button
    js = s.get(play_url + "/static/play.js", timeout=10).text
    requested = set(re.findall(r'api\("(/[^"]+)"', js)) | set(re.findall(r'(?:href|src)="(/[^"]*)"', html))
    assert requested == {"/api/envs", "/api/reset", "/api/step", "/api/goal", "/static/play.css",
                         "/static/play.js"}, requested
    for path in ("/api/envs", "/static/play.css", "/static/play.js"):  # what it GETs on load is served
        assert s.get(play_url + path, timeout=30).status_code == 200, path
    assert "text.slice(" not in js and 'class: "tool-result"' in js  # the whole result, in a scrollable box
    css = s.get(play_url + "/static/play.css", timeout=10).text
    assert re.search(r"pre\.tool-result \{[^}]*max-height[^}]*overflow: auto", css)

    envs = s.get(play_url + "/api/envs", timeout=30).json()
    assert envs["state"] is None  # a new session: no episode, and no 404 to learn that
    assert all("env" not in e["answer_schema"]["properties"] for e in envs["envs"] if e["available"])
    cart = next(e for e in envs["envs"] if e["env_id"] == "E_CART")
    assert set(cart["answer_schema"]["properties"]) == {"done"}
    view = s.post(play_url + "/api/reset", json={"env_id": "E_CART", "difficulty": 0, "seed": 3}, timeout=30).json()
    assert s.get(play_url + "/api/envs", timeout=30).json()["state"] == view  # a reload finds the episode
    # what the page sends on Submit: the form's fields plus env set from the view
    done = s.post(play_url + "/api/step", json={"action": {"answer": {"done": True, "env": view["env_id"]}}},
                  timeout=30).json()
    assert done["done"] and done["reward"]["termination_reason"] == "answered"


@pytest.mark.slow
def test_play_page_end_to_end(play_url, browser, shots):
    import requests
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 20)
    d.get(play_url + "/")
    wait.until(lambda drv: len(Select(drv.find_element(By.ID, "env-select")).options) >= 3)
    assert all(not d.find_element(By.ID, b).is_enabled() for b in ("send-turn", "submit-answer", "add-call"))
    Select(d.find_element(By.ID, "env-select")).select_by_value("E_CART")
    for field, value in (("difficulty", "0"), ("seed", "3")):
        box = d.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    d.find_element(By.ID, "reset-btn").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#transcript .msg.user")))
    shopper = d.find_element(By.CSS_SELECTOR, "#transcript .msg.user").text
    assert "SHOPPER" in shopper.upper() and len(shopper) > 20

    # a tool call through the form generated from catalog_search's JSON schema
    Select(d.find_element(By.ID, "tool-select")).select_by_value("catalog_search")
    query = d.find_element(By.ID, "f-tool-catalog_search-query")
    query.send_keys("vanilla")
    d.find_element(By.CSS_SELECTOR, "#tool-form details.group > summary").click()  # the optional filters
    d.find_element(By.ID, "f-tool-catalog_search-filters-price_max").send_keys("50")
    d.find_element(By.ID, "add-call").click()
    assert "catalog_search" in d.find_element(By.ID, "queued").text
    d.find_element(By.ID, "message").send_keys("Let me look that up.")
    d.find_element(By.ID, "send-turn").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#transcript .msg.tool")))
    assert "Turn 2" in d.find_element(By.ID, "status").text
    result = d.find_element(By.CSS_SELECTOR, "#transcript .msg.tool pre.tool-result")
    full = d.execute_script("return arguments[0].textContent", result)
    assert full.count("\n") > 5 and full.strip().endswith(("}", "]"))  # pretty-printed, whole

    # hidden goal toggle
    d.find_element(By.ID, "goal-toggle").click()
    wait.until(lambda drv: drv.find_element(By.ID, "goal").is_displayed() and "items" in drv.find_element(By.ID, "goal").text)
    d.save_screenshot(str(shots / "play_midgame.png"))

    # answer through the generated answer form -> reward breakdown
    Select(d.find_element(By.ID, "f-answer-done")).select_by_value("true")
    d.find_element(By.ID, "submit-answer").click()
    wait.until(EC.visibility_of_element_located((By.ID, "reward-panel")))
    reward = d.find_element(By.ID, "reward-table").text
    assert "r_total" in reward and "termination" in reward and "answered" in reward
    assert "Episode over" in d.find_element(By.ID, "status").text
    assert not d.find_element(By.ID, "send-turn").is_displayed()  # the turn form is hidden once it is over
    assert not d.find_element(By.ID, "error").is_displayed()
    d.save_screenshot(str(shots / "play_reward.png"))
    assert (shots / "play_reward.png").stat().st_size > 10_000

    # the page loaded nothing from outside this server
    urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(play_url) for u in urls), urls
    assert not any(u.endswith(("/favicon.ico", "/api/state")) for u in urls), urls

    # another browser session (no cookie) has no episode: sessions are isolated
    assert requests.get(play_url + "/api/state", timeout=10).status_code == 404
