"""The catalog pages of ``ahl serve`` in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium), against a real server on 127.0.0.1 holding real pushed
artifacts: adapters, a yanked version, a fusion with its heatmap, and an entry with hostile text.

Screenshots of every page land in the test's tmp directory (``docs/img/catalog-*.png`` are
copies of them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import httpx2 as httpx  # noqa: E402  (huggingface_hub's own HTTP client)
import pytest  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from adapterhub_lite import TrainConfig, api  # noqa: E402
from adapterhub_lite.artifact import HEATMAP_FILE  # noqa: E402
from adapterhub_lite.files import sha256_file  # noqa: E402
from adapterhub_lite.registry.client.cache import DownloadCache  # noqa: E402
from adapterhub_lite.registry.client.remote import RemoteRegistry  # noqa: E402
from adapterhub_lite.registry.format.refs import Ref  # noqa: E402
from adapterhub_lite.registry.server.pages import card_body, safe_link  # noqa: E402

from .conftest import AhlServer, make_artifact  # noqa: E402

HUB_ID = "test-org/tiny-bert"
FAST = TrainConfig(mode="fusion", epochs=1, batch_size=16, learning_rate=1e-3, device="cpu")
HOSTILE_TAG = '"><b id="injected">tag</b>'
HOSTILE_CARD = """
# Evil card <script>window.__fired.push("card-script")</script>

<img src=x onerror="window.__fired.push('onerror')">

[click me](javascript:window.__fired.push('js-link')) and [spaced](java script:alert(1))
and [fine](https://example.org/docs) and [relative](/other/page).

<a href="javascript:alert(1)">raw link</a>
"""
# Before any page script: record dialogs, and any Content-Security-Policy refusal (which would
# mean markup reached the page as code and only the policy stopped it).
HOOK = """
window.__fired = [];
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = (...args) => { window.__fired.push(name + ":" + args.join(",")); };
}
document.addEventListener("securitypolicyviolation", (e) => window.__fired.push("csp:" + e.violatedDirective));
"""


def _hostile(path: Path) -> Path:
    """An artifact whose card holds script, event handlers and javascript: links, and whose
    tags hold HTML; its metadata records the new card's sha256 so it verifies and pushes."""
    card = path / "README.md"
    card.write_text(card.read_text(encoding="utf-8") + HOSTILE_CARD, encoding="utf-8")
    meta_path = path / "adapter.json"
    meta = json.loads(meta_path.read_text())
    meta["tags"] = [HOSTILE_TAG, "<script>alert('tag')</script>"]
    meta["files"]["README.md"] = {"sha256": sha256_file(card), "size": card.stat().st_size}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


@pytest.fixture(scope="module")
def hub_base(tiny_base_model):
    return dataclasses.replace(tiny_base_model, model_id=HUB_ID)


def _publish(server: AhlServer, tmp: Path, hub_base, spam_files) -> dict[str, Path]:
    """Push through ahl's own client: sst2 1.0.0-1.2.0 (1.2.0 yanked), imdb, a houlsby and a
    head-only adapter, a fusion of sst2@1.0.0 and news, and the hostile entry."""
    registry = RemoteRegistry(f"{server.url}/{server.user}", token=server.token, cache=DownloadCache(tmp / "cache"))
    art = lambda name, task, seed, **kw: make_artifact(
        tmp / f"{name}-{seed}",
        hub_base,
        task=task,
        name=name,  # noqa: E731
        seed=seed,
        **kw,
    )
    made = {"sst2": art("sst2", "sentiment", 0), "news": art("news", "topic", 1)}
    registry.push(made["sst2"], version="1.0.0")
    registry.push(art("sst2", "sentiment", 3), version="1.1.0")
    registry.push(art("sst2", "sentiment", 5), version="1.2.0")
    registry.yank(Ref(HUB_ID, "sentiment", "sst2", version="1.2.0"))
    registry.push(art("imdb", "sentiment", 7))
    registry.push(made["news"])
    registry.push(art("squad", "qa", 2, preset="houlsby"))
    registry.push(art("probe", "topic", 4, preset=None))
    registry.push(_hostile(art("evil", "evil", 9)))
    fusion = api.fuse(
        [made["sst2"], made["news"]],
        spam_files[0],
        dev_data=spam_files[1],
        task="spam",
        base=hub_base,
        config=FAST,
        out=tmp / "spam-fusion",
    ).artifact.path
    registry.push(fusion)
    return {**made, "fusion": fusion, "registry": registry}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, hub_base, spam_files):
    tmp = tmp_path_factory.mktemp("catalog")
    server = AhlServer(tmp / "registry").start()
    try:
        made = _publish(server, tmp, hub_base, spam_files)
        yield server, made
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--disable-gpu",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService("/usr/bin/chromedriver"))
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOK})
    driver.shots = tmp_path_factory.mktemp("screenshots")  # type: ignore[attr-defined]
    yield driver
    driver.quit()


def shot(driver, name: str) -> Path:
    path = driver.shots / f"catalog-{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height + 160, 700), 2600))  # the whole page (+ window frame), up to a limit
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    assert path.stat().st_size > 1000
    return path


def click(driver, by: str, value: str) -> None:
    """Click what loads a new page, and wait until it has: the old page's window mark is gone and
    the new one is loaded. (Waiting for the old <html> element to go stale races with Chromium
    detaching it, which the driver can report as an inspector error rather than staleness.)"""
    driver.execute_script("window.ahlOldPage = true")
    driver.find_element(by, value).click()
    WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.ahlOldPage && document.readyState === 'complete'")
    )


def entries_shown(driver) -> list[str]:
    return [row.get_attribute("data-entry") for row in driver.find_elements(By.CSS_SELECTOR, "tr.result")]


def nothing_fired(driver) -> None:
    assert driver.execute_script("return window.__fired") == []
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and e["source"] != "network"]
    assert errors == []


def searched(registry: RemoteRegistry, **filters) -> list[str]:
    return [f"{e.ref.base}/{e.ref.task}/{e.ref.name}" for e in registry.search(limit=100, **filters)]


# -- in the browser ---------------------------------------------------------------------------------


def test_catalog_search_filters_and_sort_match_ahl_search(catalog, browser):
    server, made = catalog
    registry = made["registry"]
    browser.get(server.url + "/")
    shot(browser, "home")
    assert sorted(entries_shown(browser)) == sorted(searched(registry)) and len(entries_shown(browser)) == 7
    nothing_fired(browser)

    box = browser.find_element(By.ID, "q")
    box.send_keys("ss")
    click(browser, By.ID, "search")
    assert entries_shown(browser) == searched(registry, name="ss") == [f"{HUB_ID}/sentiment/sst2"]

    browser.get(server.url + "/")
    Select(browser.find_element(By.ID, "architecture")).select_by_value("houlsby")
    click(browser, By.ID, "search")
    assert entries_shown(browser) == searched(registry, architecture="houlsby") == [f"{HUB_ID}/qa/squad"]

    browser.get(server.url + "/")
    browser.find_element(By.ID, "task").send_keys("sentiment")
    Select(browser.find_element(By.ID, "sort")).select_by_value("accuracy")
    click(browser, By.ID, "search")
    shown = entries_shown(browser)
    assert shown == searched(registry, task="sentiment", sort="accuracy")
    assert shown == [f"{HUB_ID}/sentiment/imdb", f"{HUB_ID}/sentiment/sst2"]  # 0.57 over 0.53 (1.2.0 yanked)
    row = browser.find_element(By.CSS_SELECTOR, "tr.result")
    assert "accuracy 0.570" in row.text and "1.0.0" in row.text
    shot(browser, "search")

    browser.get(server.url + "/?" + urlencode({"tag": HOSTILE_TAG}))
    assert entries_shown(browser) == searched(registry, tag=HOSTILE_TAG) == [f"{HUB_ID}/evil/evil"]


def test_entry_page_fusion_lineage_heatmap_and_copy(catalog, browser, tmp_path):
    server, made = catalog
    browser.get(server.url + "/")
    click(browser, By.CSS_SELECTOR, f'tr[data-entry="{HUB_ID}/spam/spam-fusion"] a.entry-link')
    assert browser.find_element(By.ID, "entry-title").text.startswith("spam/spam-fusion")
    heatmap = browser.find_element(By.ID, "heatmap")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heatmap) > 100
    files = browser.find_element(By.CSS_SELECTOR, "table.files").text
    meta = json.loads((made["fusion"] / "fusion.json").read_text())
    assert HEATMAP_FILE in files and meta["files"][HEATMAP_FILE]["sha256"] in files
    assert (
        meta["base"]["fingerprint"]["weights_sha256"] in browser.find_element(By.CSS_SELECTOR, "table.fingerprint").text
    )
    shot(browser, "entry")
    nothing_fired(browser)

    # copy the pull command: read back from the real clipboard, then run it as written
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    command = browser.find_element(By.ID, "pull-command").text
    browser.find_element(By.ID, "copy-pull").click()
    assert browser.find_element(By.ID, "copy-pull").text == "Copied"
    copied = browser.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('error: ' + e))"
    )
    assert copied == command == f"ahl pull {HUB_ID}/spam/spam-fusion@1.0.0 --registry {server.url}/alice"
    env = {**os.environ, "AHL_CACHE": str(tmp_path / "cache"), "AHL_TOKEN": server.token}
    done = subprocess.run(
        [sys.executable, "-m", "adapterhub_lite", *shlex.split(copied)[1:], "--to", str(tmp_path / "pulled")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pulled" / HEATMAP_FILE).read_bytes() == (made["fusion"] / HEATMAP_FILE).read_bytes()

    # lineage: each locked adapter links to its own entry at the locked version
    links = browser.find_elements(By.CSS_SELECTOR, "a.lock-link")
    assert [a.text for a in links] == ["sentiment/sst2", "topic/news"]
    click(browser, By.CSS_SELECTOR, "a.lock-link")
    assert browser.find_element(By.ID, "entry-title").text.startswith("sentiment/sst2")
    chosen = browser.find_element(By.CSS_SELECTOR, "tr.version.chosen")
    assert chosen.get_attribute("data-version") == "1.0.0"
    yanked = browser.find_element(By.CSS_SELECTOR, 'tr.version[data-version="1.2.0"]')
    assert "is-yanked" in yanked.get_attribute("class") and "yanked" in yanked.text
    nothing_fired(browser)


def test_base_model_page_groups_by_task_best_first(catalog, browser):
    server, _ = catalog
    browser.get(server.url + "/")
    click(browser, By.CSS_SELECTOR, "tr.result .sub a")
    assert browser.find_element(By.ID, "base-title").text == HUB_ID
    groups = browser.find_elements(By.CSS_SELECTOR, "section.task-group")
    assert [g.get_attribute("data-task") for g in groups] == ["evil", "qa", "sentiment", "spam", "topic"]
    sentiment = groups[2].find_elements(By.CSS_SELECTOR, "tr.result")
    assert [r.get_attribute("data-entry") for r in sentiment] == [
        f"{HUB_ID}/sentiment/imdb",
        f"{HUB_ID}/sentiment/sst2",
    ]
    shot(browser, "base")
    nothing_fired(browser)


def test_hostile_card_name_and_tags_render_as_text(catalog, browser):
    server, _ = catalog
    browser.get(server.url + "/?task=evil")
    assert browser.find_elements(By.ID, "injected") == []
    assert HOSTILE_TAG in browser.find_element(By.CSS_SELECTOR, "tr.result .tags").text
    click(browser, By.CSS_SELECTOR, "a.entry-link")
    card = browser.find_element(By.ID, "card")
    assert card.find_elements(By.CSS_SELECTOR, "script, img, [onerror]") == []
    hrefs = [a.get_attribute("href") for a in card.find_elements(By.TAG_NAME, "a")]
    assert hrefs == ["https://example.org/docs", f"{server.url}/other/page"]  # javascript: links are text
    assert '<script>window.__fired.push("card-script")</script>' in card.text
    assert "<img src=x onerror=" in card.text
    shot(browser, "hostile")
    nothing_fired(browser)


def test_private_registry_pages_need_a_login(tmp_path_factory, browser, hub_base):
    server = AhlServer(tmp_path_factory.mktemp("private") / "registry", "--private").start()
    try:
        registry = RemoteRegistry(
            f"{server.url}/{server.user}", token=server.token, cache=DownloadCache(tmp_path_factory.mktemp("cache"))
        )
        registry.push(make_artifact(tmp_path_factory.mktemp("a") / "sst2", hub_base, task="sentiment", name="sst2"))
        browser.delete_all_cookies()
        browser.get(server.url + "/?task=sentiment")
        assert browser.current_url.startswith(f"{server.url}/-/login?next=")
        shot(browser, "login")
        browser.find_element(By.ID, "token").send_keys("not-a-token")
        click(browser, By.ID, "login")
        assert "not valid" in browser.find_element(By.ID, "login-error").text
        browser.find_element(By.ID, "token").send_keys(server.token)
        click(browser, By.ID, "login")
        assert browser.current_url == f"{server.url}/?task=sentiment"
        assert entries_shown(browser) == [f"{HUB_ID}/sentiment/sst2"]
        cookie = browser.get_cookie("ahl_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and server.token not in cookie["value"]
        assert server.token not in browser.page_source
        click(browser, By.ID, "logout")
        assert browser.current_url == f"{server.url}/-/login"
        browser.get(server.url + "/")
        assert browser.current_url.startswith(f"{server.url}/-/login")
        nothing_fired(browser)
    finally:
        server.stop()


# -- over HTTP ---------------------------------------------------------------------------------------


def test_pages_send_security_headers_and_html_errors(catalog):
    server, _ = catalog
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    missing = httpx.get(server.url + "/alice/no-such-repo")
    assert missing.status_code == 404 and "not found" in missing.text and missing.headers["x-frame-options"] == "DENY"
    bad = httpx.get(server.url + "/?task=" + "bad%20task")
    assert bad.status_code == 400 and "task" in bad.text
    assert httpx.get(server.url + "/api/models").headers["content-type"] == "application/json"


def test_heatmap_is_served_as_an_image_that_runs_nothing(catalog):
    server, made = catalog
    repo = httpx.get(server.url + "/api/models", params={"filter": "task:spam"}).json()[0]["id"]
    answer = httpx.get(f"{server.url}/-/heatmap/{repo}/v1.0.0")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
    assert "sandbox" in answer.headers["content-security-policy"] and "script" not in answer.headers[
        "content-security-policy"
    ].replace("default-src 'none'", "")
    assert answer.content == (made["fusion"] / HEATMAP_FILE).read_bytes()
    plain = httpx.get(server.url + "/api/models", params={"filter": "task:sentiment"}).json()[0]["id"]
    assert httpx.get(f"{server.url}/-/heatmap/{plain}/v1.0.0").status_code == 404


def test_login_and_logout_need_their_csrf_token(catalog):
    server, _ = catalog
    refused = httpx.post(server.url + "/-/login", data={"token": server.token, "csrf": "x"})
    assert refused.status_code == 403 and "ahl_session" not in refused.headers.get("set-cookie", "")
    with httpx.Client(base_url=server.url) as client:
        form = client.get("/-/login")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        foreign = client.post(
            "/-/login", data={"token": server.token, "csrf": csrf[:-1] + ("B" if csrf.endswith("A") else "A")}
        )
        assert foreign.status_code == 403
        assert (
            client.post("/-/login", data={"token": server.token, "csrf": csrf, "next": "//evil.example/"}).headers[
                "location"
            ]
            == "/"
        )
        assert "ahl_session" in client.cookies
        assert client.post("/-/logout", data={"csrf": "forged"}).status_code == 403
        assert server.token not in client.get("/").text


def test_card_links_and_header():
    assert safe_link("https://example.org/x") and safe_link("/relative") and safe_link("#anchor")
    for link in (
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "java\tscript:alert(1)",
        " javascript:x",
        "data:text/html,x",
        "vbscript:x",
        "file:///etc/passwd",
        "http://[::1",
    ):
        assert not safe_link(link), link
    assert card_body("---\ntags: [a]\n---\n# Title\n") == "# Title\n"
    assert card_body("# no header\n") == "# no header\n"


def test_catalog_pages_through_what_ahl_search_lists(tmp_path_factory, hub_base):
    """30 entries (pushed into the served directory: the ahl/ mirrors), 25 a page, by accuracy."""
    import re

    from adapterhub_lite.registry.client.local import LocalRegistry

    tmp = tmp_path_factory.mktemp("paged")
    server = AhlServer(tmp / "registry").start()
    try:
        local = LocalRegistry(server.root)
        for seed in range(30):
            local.push(make_artifact(tmp / f"n{seed:02d}", hub_base, task="bulk", name=f"n{seed:02d}", seed=seed))
        registry = RemoteRegistry(server.url, cache=DownloadCache(tmp / "cache"))
        shown, url = [], "/?task=bulk&sort=accuracy"
        while url:
            page = httpx.get(server.url + url)
            assert page.status_code == 200
            shown.append(re.findall(r'<tr class="result" data-entry="([^"]+)"', page.text))
            found = re.search(r'id="older" href="([^"]+)"', page.text)
            url = found.group(1).replace("&amp;", "&") if found else None
        assert [len(rows) for rows in shown] == [25, 5]
        assert shown[0] + shown[1] == searched(registry, task="bulk", sort="accuracy")
        assert shown[0][0] == f"{HUB_ID}/bulk/n29"  # dev accuracy 0.5 + seed / 100: best first
    finally:
        server.stop()
