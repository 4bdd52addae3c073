"""The dashboard in a real headless Chromium (Debian's, driven by Playwright for Python), against
a running gateway: see dashboard.rs, which starts the gateway and runs this script.

Usage: dashboard.py BASE_URL ADMIN_KEY VIEWER_KEY CLIENT_KEY SCREENSHOT_DIR
Prints "all checks passed" at the end; any failed check raises.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

import openai
from playwright.sync_api import sync_playwright

BASE, ADMIN, VIEWER, CLIENT, SHOTS = sys.argv[1:6]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PAGES = ["overview", "providers", "clients", "requests", "config", "storage"]
TRAFFIC = 5
TIMEOUT_S = 20

# Plain HTTP, no proxy from the environment, no redirects followed.
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)


def http(method, path, key=None, body=None, headers=None):
    """Status, headers and body (JSON when it parses) of one call."""
    request = urllib.request.Request(BASE + path, method=method)
    if key:
        request.add_header("Authorization", "Bearer " + key)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with HTTP.open(request, data=data, timeout=30) as response:
            status, head, text = response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as e:
        status, head, text = e.code, e.headers, e.read().decode()
    try:
        return status, head, json.loads(text)
    except ValueError:
        return status, head, text


def eventually(what, check):
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {TIMEOUT_S} s"
        time.sleep(0.1)


def sdk(key):
    return openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0)


def chat(key):
    return sdk(key).chat.completions.create(
        model="gpt-4o-mini", max_tokens=8,
        messages=[{"role": "user", "content": "count these five words please"}])


# ---- without a session ------------------------------------------------------------------------

ADMIN_READS = ["/admin/keys", "/admin/teams", "/admin/usage/summary", "/admin/providers",
               "/admin/requests", "/admin/storage", "/admin/config/versions", "/admin/config/show",
               "/admin/config/diff"]


def check_without_session():
    for path in ["/ui"] + ["/ui/" + p for p in PAGES]:
        status, head, _ = http("GET", path)
        assert status in (302, 303, 307) and head["Location"] == "/ui/login", (path, status)
    for method, path in [("GET", "/ui/session"), ("GET", "/ui/assets/app.js"),
                         ("GET", "/ui/assets/app.css"), ("POST", "/ui/logout")] + \
                        [("GET", p) for p in ADMIN_READS] + \
                        [("POST", "/admin/keys"), ("POST", "/admin/config/rollback")]:
        status, _, _ = http(method, path)
        assert status == 401, (method, path, status)
    # A forged cookie is no session either.
    status, _, _ = http("GET", "/admin/keys", headers={"Cookie": "truckllm_session=forged"})
    assert status == 401, status
    status, head, _ = http("GET", "/ui/overview", headers={"Cookie": "truckllm_session=forged"})
    assert status == 303 and head["Location"] == "/ui/login", status
    status, _, text = http("GET", "/ui/login")
    assert status == 200 and 'type="password"' in text
    print("without a session: pages redirect, the data API answers 401")


# ---- browser helpers --------------------------------------------------------------------------

class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, context):
        self.page = context.new_page()
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.set_default_timeout(TIMEOUT_S * 1000)

    def sign_in(self, key):
        self.page.goto(BASE + "/ui/overview")
        assert self.page.url.endswith("/ui/login"), self.page.url
        self.page.fill("#key", key)
        self.page.keyboard.press("Enter")  # the form works from the keyboard
        self.page.wait_for_url(BASE + "/ui")
        self.ready()

    def open(self, name):
        self.page.goto(BASE + "/ui/" + name)
        self.ready()

    def ready(self):
        self.page.wait_for_selector("body[data-ready='true']")
        self.clean()

    def clean(self):
        assert not self.errors, f"console errors on {self.page.url}: {self.errors}"

    def shot(self, name):
        self.page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)


def summary(range_="15m"):
    status, _, body = http("GET", "/admin/usage/summary?range=" + range_, key=ADMIN)
    assert status == 200, body
    return body


def check_overview(admin, sent):
    # The store's roll-ups reach the known traffic (usage is written coalesced, a moment later).
    eventually("the traffic in the roll-ups", lambda: summary()["total"]["requests"] == TRAFFIC)
    api = summary()["total"]
    assert api["tokens"] == sent["tokens"], (api, sent)
    assert abs(api["cost"] - sent["cost"]) < 1e-12, (api, sent)
    admin.open("overview")
    admin.page.click("button[data-range='15m']")
    figure = lambda name: admin.page.get_attribute(f"[data-figure='{name}']", "data-value")
    eventually("the overview's figures", lambda: figure("requests") == str(TRAFFIC))
    for name, want in [("requests", api["requests"]), ("tokens", api["tokens"]),
                       ("cost", api["cost"]), ("errors", 0)]:
        assert float(figure(name)) == float(want), (name, figure(name), want)
    assert float(figure("tokens")) == sent["tokens"]
    # Percentiles come from the request log: the same requests, and the refusals above.
    status, _, found = http("GET", "/admin/requests?since=15m&model=gpt-4o-mini&status=2xx", key=ADMIN)
    assert status == 200 and found["matched"] == TRAFFIC, found
    eventually("the log's figures", lambda: figure("logged") == str(TRAFFIC))
    log = summary()["log"]
    assert log["requests"] == TRAFFIC and 0 < log["latency_p50_ms"] <= log["latency_p99_ms"], log
    assert float(figure("p50")) == log["latency_p50_ms"], (figure("p50"), log)
    admin.page.click("button[data-range='30d']")
    admin.page.wait_for_selector("[data-unavailable='30d']")
    admin.clean()
    admin.page.click("button[data-range='15m']")
    admin.page.wait_for_selector("[data-figure='requests']")
    print(f"overview: {TRAFFIC} requests, {sent['tokens']} tokens, as the admin API and the SDK say")


def check_keyboard(admin):
    # From the top of a page, Tab reaches the skip link first, then the navigation; Enter
    # follows a link.
    admin.open("overview")
    admin.page.keyboard.press("Tab")
    assert admin.page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(10):
        admin.page.keyboard.press("Tab")
        if admin.page.evaluate("document.activeElement.dataset.page") == "config":
            break
    else:
        raise AssertionError("Tab never reached the Config link")
    admin.page.keyboard.press("Enter")
    admin.page.wait_for_url(BASE + "/ui/config")
    admin.ready()
    print("keyboard: Tab reaches the links, Enter follows them")


def check_pages(admin):
    check_keyboard(admin)
    for name in PAGES:
        admin.open(name)
        admin.shot(name)
    admin.page.set_viewport_size({"width": 390, "height": 844})
    for name in PAGES:
        admin.open(name)
        width = admin.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width} px wide on a 390 px screen"
    admin.open("overview")
    admin.shot("overview-phone")
    admin.page.set_viewport_size({"width": 1280, "height": 800})
    print("every page renders without a console error, at 1280x800 and 390 wide")


LONG_ID = "ui-made-key-with-a-rather-long-name-that-must-not-break-layout"


def check_keys(admin):
    admin.open("clients")
    admin.page.fill("#new-key-id", LONG_ID)
    admin.page.fill("#new-key-rpm", "60")
    admin.page.fill("#new-key-budget", "5")
    admin.page.click("#create-key button[type='submit']")
    secret = admin.page.text_content(f"[data-secret='{LONG_ID}']", timeout=TIMEOUT_S * 1000)
    assert secret.startswith("tk-"), secret
    status, _, shown = http("GET", "/admin/keys/" + LONG_ID, key=ADMIN)
    assert shown["limits"] == {"req_per_min": 60.0} and shown["budget"]["max_cost"] == 5.0, shown
    assert secret not in json.dumps(shown), "the secret is shown once only"
    admin.page.wait_for_selector(f"tr[data-key='{LONG_ID}']")
    # A budget set from the UI on an existing key.
    admin.page.select_option("#budget-target", "keys:seed")
    admin.page.fill("#budget-amount", "2.5")
    admin.page.select_option("#budget-period", "month")
    admin.page.click("#set-budget button[type='submit']")
    budget = lambda: http("GET", "/admin/keys/seed", key=ADMIN)[2].get("budget") or {}
    eventually("the seed key's budget", lambda: budget().get("max_cost") == 2.5)
    assert budget()["period"] == "month", budget()
    admin.shot("clients")
    reply = chat(secret)
    assert reply.choices[0].message.content, reply
    admin.page.wait_for_selector(f"tr[data-key='{LONG_ID}'] [data-status='active']")
    # Disable from the UI: the key is refused.
    admin.page.click(f"tr[data-key='{LONG_ID}'] button[data-action='disable']")
    admin.page.wait_for_selector(f"tr[data-key='{LONG_ID}'] [data-status='disabled']")
    try:
        chat(secret)
        raise AssertionError("a disabled key was admitted")
    except openai.AuthenticationError:
        pass
    admin.page.click(f"tr[data-key='{LONG_ID}'] button[data-action='enable']")
    admin.page.wait_for_selector(f"tr[data-key='{LONG_ID}'] [data-status='active']")
    eventually("the enabled key works", lambda: chat(secret).choices[0].message.content)
    admin.clean()
    print("a key created in the UI works with the SDK; disable and enable apply")
    return secret


def check_rollback(admin, made_key):
    status, _, versions = http("GET", "/admin/config/versions", key=ADMIN)
    assert status == 200 and versions["current"] >= 4, versions
    admin.open("config")
    admin.page.once("dialog", lambda dialog: dialog.accept())
    admin.page.click("button[data-rollback='1']")
    notice = admin.page.wait_for_selector("[data-rolled-back]")
    new_version = int(notice.get_attribute("data-rolled-back"))
    assert new_version == versions["current"] + 1, (new_version, versions)
    status, _, after = http("GET", "/admin/config/versions", key=ADMIN)
    assert after["running"] == new_version and after["current"] == new_version, after
    assert after["versions"][0]["comment"] == "rollback to version 1", after["versions"][0]
    # Version 1 has no such key: the gateway applied the rollback.
    try:
        chat(made_key)
        raise AssertionError("the rolled-back config still admits the UI's key")
    except openai.AuthenticationError:
        pass
    # A dismissed confirmation changes nothing.
    asked = []
    admin.page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    admin.page.click("button[data-rollback='2']")
    eventually("the confirmation", lambda: asked)
    assert "version 2" in asked[0], asked
    status, _, same = http("GET", "/admin/config/versions", key=ADMIN)
    assert same["current"] == new_version, same
    # The diff and a version's text show no secret.
    admin.page.fill("#diff-from", "1")
    admin.page.fill("#diff-to", str(new_version - 1))
    admin.page.click("#diff-form button[type='submit']")
    diff = admin.page.text_content("#diff")
    assert LONG_ID in diff, diff
    admin.shot("config")
    for secret in (ADMIN, VIEWER, CLIENT, "mock-secret"):
        assert secret not in diff, "a secret in the diff"
    admin.clean()
    print(f"rollback from the UI: version {new_version} runs, the UI's key is refused")


def check_requests(admin):
    admin.open("requests")
    admin.page.wait_for_selector("button[data-request]")
    admin.page.fill("#filter-status", "2xx")
    admin.page.fill("#filter-model", "gpt-4o-mini")
    admin.page.click("#request-filter button[type='submit']")
    admin.page.wait_for_selector("#requests-body[data-query*='status=2xx']")
    # A locator, found again if the live refresh redraws the table meanwhile.
    admin.page.locator("button[data-request]").first.click()
    record = json.loads(admin.page.text_content("#record"))
    assert record["status"] == 200 and record["model"] == "gpt-4o-mini", record
    assert record["request_id"].startswith("req-"), record
    admin.clean()
    print("requests: filtered search and one record opened in full")


def check_csrf(admin):
    # The session alone does not make a change: the CSRF token must come with it.
    status = admin.page.evaluate("""async () => (await fetch('/admin/keys', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: '{}'})).status""")
    assert status == 403, status
    assert len(admin.errors) == 1 and "403" in admin.errors[0], admin.errors
    admin.errors.clear()
    print("a change without the CSRF token is refused")


def check_viewer(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    viewer = Watched(context)
    viewer.sign_in(VIEWER)
    for name in PAGES:
        viewer.open(name)
        assert viewer.page.locator(".change").count() == 0, f"a change button for a viewer on {name}"
    viewer.open("config")
    assert viewer.page.locator("[data-rollback]").count() == 0
    viewer.open("clients")
    assert viewer.page.locator("#create-key").count() == 0
    viewer.shot("clients-viewer")
    refused = viewer.page.evaluate("""async () => {
        const s = await (await fetch('/ui/session')).json();
        const r = await fetch('/admin/keys', {method: 'POST', headers: {'Content-Type':
            'application/json', 'x-csrf-token': s.csrf}, body: '{"id": "viewer-made"}'});
        return [s.role, r.status, (await r.json()).error.code];
    }""")
    assert refused == ["viewer", 403, "read_only"], refused
    rollback = viewer.page.evaluate("""async () => {
        const s = await (await fetch('/ui/session')).json();
        const r = await fetch('/admin/config/rollback', {method: 'POST', headers:
            {'Content-Type': 'application/json', 'x-csrf-token': s.csrf}, body: '{"version": 1}'});
        return r.status;
    }""")
    assert rollback == 403, rollback
    # The two refusals above are the console's only errors: Chromium logs refused fetches.
    assert len(viewer.errors) == 2 and all("403" in e for e in viewer.errors), viewer.errors
    viewer.errors.clear()
    context.close()
    print("a viewer sees no change button and the API refuses the viewer's changes")


def check_sign_out(admin):
    admin.open("overview")
    admin.page.click("#sign-out")
    admin.page.wait_for_url(BASE + "/ui/login")
    admin.page.goto(BASE + "/ui/config")
    assert admin.page.url.endswith("/ui/login"), admin.page.url
    status = admin.page.evaluate("async () => (await fetch('/admin/keys')).status")
    assert status == 401, status
    admin.errors.clear()  # the refused fetch just made
    print("signed out: pages redirect and the API answers 401")


def check_wrong_key(browser):
    context = browser.new_context()
    page = context.new_page()
    page.goto(BASE + "/ui/login")
    page.fill("#key", CLIENT)  # a client key is no admin key
    page.click("button[type='submit']")
    page.wait_for_selector(".message:not(:empty)")
    assert page.url.endswith("/ui/login")
    assert context.cookies() == [], context.cookies()
    context.close()


def main():
    check_without_session()
    sent = {"tokens": 0, "cost": 0.0}
    for _ in range(TRAFFIC):
        usage = chat(CLIENT).usage
        sent["tokens"] += usage.total_tokens
        # The mock's provider prices: 0.15 and 0.60 per million tokens.
        sent["cost"] += (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.60) / 1e6
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--no-proxy-server"])
        check_wrong_key(browser)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        cookies_before = context.cookies()
        admin = Watched(context)
        admin.sign_in(ADMIN)
        cookie = [c for c in context.cookies() if c["name"] == "truckllm_session"][0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
        assert cookies_before == []
        check_overview(admin, sent)
        check_pages(admin)
        made = check_keys(admin)
        check_requests(admin)
        check_rollback(admin, made)
        check_csrf(admin)
        check_viewer(browser)
        check_sign_out(admin)
        admin.clean()
        browser.close()
    print("all checks passed")


main()
