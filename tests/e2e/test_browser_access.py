"""Who may use the browser client, and what a page says when it may not or cannot: a front end
on another origin with its own key (CORS), no key or a refused key, no scraper worker, the
portal failing; and the API docs with no CDN. Real Chromium against a running stack."""

import os
import signal
import time

import httpx
import pytest
from selenium.webdriver.common.by import By

from esteira_portal.records import FIRST_OS

pytestmark = pytest.mark.integration
LEVELS = ("CRITICA", "ALTA", "MEDIA", "BAIXA")
QUEUE_REQUESTS = (
    "return performance.getEntriesByType('resource')"
    ".filter((e) => e.name.endsWith('/api/v1/queues')).length"
)

HOST_PAGE = """<!doctype html>
<html lang="pt-BR">
<head>
  <meta charset="utf-8">
  <meta name="ruptura-workers" content="true">
  <meta name="esteira-api-key" content="{key}">
  <title>ERP — pedidos</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{gateway}/static/esteira.css">
</head>
<body>
  <h1>Pedidos do ERP</h1>
  <ul>{items}</ul>
  {base}<script src="{gateway}/static/esteira.js"></script>
</body>
</html>
"""


MODULE_PAGE = """<!doctype html>
<html lang="pt-BR">
<head><meta charset="utf-8"><title>ERP — módulo</title><link rel="icon" href="data:,"></head>
<body>
  <script type="module">
    import {{ OsLookup, RupturaClient, setApiKey }} from "{gateway}/static/esteira.mjs";
    setApiKey("{key}");
    const results = [];
    await new RupturaClient({{ onResult: (r) => results.push(r.criticidade) }}).run(["100001"]);
    const data = await new OsLookup().lookup("{os}");
    window.found = "ok " + results.join(",") + " " + data.cliente;
  </script>
</body>
</html>
"""


def _statuses(driver) -> list[str]:
    return [
        b.get_attribute("data-status") or ""
        for b in driver.find_elements(By.CSS_SELECTOR, "[data-ruptura-badge]")
    ]


def _write_host_page(folder, gateway: str, key: str, *, base_url: bool = True) -> None:
    """The ERP's page; without base_url, esteira.js finds the gateway from its own src."""
    items = "".join(
        f'<li data-ruptura-pedido="{n}">Pedido {n} <span data-ruptura-badge>…</span></li>'
        for n in range(100001, 100009)
    )
    base = f'<script>window.ESTEIRA_BASE_URL = "{gateway}";</script>\n  ' if base_url else ""
    page = HOST_PAGE.format(gateway=gateway, key=key, items=items, base=base)
    (folder / "pedidos.html").write_text(page)


def test_a_front_end_on_another_origin_uses_the_addon_and_the_os_modal(
    start_site, host_server, chromium, page
) -> None:
    folder, port = host_server
    origin = f"http://127.0.0.1:{port}"
    site = start_site(auth=True, cors_origins=origin)
    assert site.key is not None
    _write_host_page(folder, site.url, site.key, base_url=False)

    preflight = httpx.options(
        f"{site.url}/api/v1/ruptura/sessions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    refused = httpx.options(
        f"{site.url}/api/v1/queues",
        headers={"Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "GET"},
    )
    assert refused.status_code == 400

    driver = chromium.driver
    driver.get(f"{origin}/pedidos.html")
    page.until(
        driver,
        lambda d: len(_statuses(d)) == 8 and all(s in LEVELS for s in _statuses(d)),
        60,
        "the add-on on another origin never showed every result",
    )
    assert driver.find_element(By.CLASS_NAME, "esteira-workers").text == "Workers Ativos (1)"
    badges = [t for t in page.contrast(driver) if t["badge"]]
    assert len(badges) == 9 and all(b["ratio"] >= 4.5 for b in badges), badges
    # The request id is exposed to the page; a 401 reaches it readable, not as a CORS failure.
    seen = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0] + "/api/v1/queues", {headers: {Authorization: "Bearer " + arguments[1]}})
          .then((r) => fetch(arguments[0] + "/api/v1/queues").then((refused) => refused.json()
            .then((body) => done([r.status, r.headers.get("x-request-id"), refused.status,
                                  body.error.code]))))
          .catch((e) => done(String(e)));""",
        site.url,
        site.key,
    )
    assert seen[0] == 200 and seen[1] and seen[2:] == [401, "unauthenticated"], seen

    # showOsModal with no options looks the OS up at the configured gateway, not the host.
    driver.execute_script(f"window.modal = Esteira.showOsModal('{FIRST_OS + 21}')")
    dialog = page.until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=dialog]"))[0]
    page.until(driver, lambda d: dialog.get_attribute("data-status") == "success", 90)
    assert "Cliente: " in dialog.text
    assert page.severe(driver, allowed=("401 (Unauthorized)",)) == []  # the refused fetch above

    # The ES module, imported across origins, finds the gateway from its own URL too.
    module_page = MODULE_PAGE.format(gateway=site.url, key=site.key, os=FIRST_OS + 22)
    (folder / "modulo.html").write_text(module_page)
    driver.get(f"{origin}/modulo.html")
    found = page.until(driver, lambda d: d.execute_script("return window.found"), 60)
    word, level, cliente = found.split(" ", 2)
    assert word == "ok" and level in LEVELS and cliente not in ("", "undefined"), found
    assert page.severe(driver) == []


def test_a_page_whose_origin_is_not_allowed_is_told_it_cannot_reach_the_gateway(
    start_site, host_server, chromium, page
) -> None:
    folder, port = host_server
    site = start_site(("ruptura",), auth=True, cors_origins=f"http://127.0.0.1:{port}")
    assert site.key is not None
    _write_host_page(folder, site.url, site.key)
    driver = chromium.driver
    driver.get(f"http://localhost:{port}/pedidos.html")  # another origin than the allowed one
    box = page.until(
        driver,
        lambda d: [
            b
            for b in d.find_elements(By.CLASS_NAME, "esteira-progress")
            if b.get_attribute("data-state") == "error"
        ],
        30,
        "the add-on never said it failed",
    )[0]
    assert "Sem conexão com o gateway" in box.text
    assert set(_statuses(driver)) == {"erro"}  # never "não encontrado"


def test_with_auth_on_the_operator_page_asks_for_a_key_and_says_when_it_is_refused(
    start_site, chromium, page
) -> None:
    site = start_site(("ruptura",), auth=True)
    assert site.key is not None
    driver = chromium.driver
    driver.get(f"{site.url}/ui")
    form = driver.find_element(By.ID, "auth-form")
    page.until(driver, lambda d: form.is_displayed(), message="no key banner")
    assert "pede uma chave de API" in driver.find_element(By.ID, "auth-message").text
    page.until(driver, lambda d: "Sem acesso" in d.find_element(By.ID, "queues").text)
    assert "Sem acesso" in driver.find_element(By.ID, "pedidos").text
    assert "não encontrado" not in driver.find_element(By.TAG_NAME, "body").text
    assert [t for t in page.contrast(driver) if t["ratio"] < 4.5] == []

    # "Agora não": the banner stays away through several refreshes (every 2 s), until asked.
    driver.find_element(By.ID, "auth-later").click()
    assert not form.is_displayed()
    reopen = driver.find_element(By.ID, "auth-open")
    assert reopen.is_displayed()
    asked = driver.execute_script(QUEUE_REQUESTS)
    page.until(driver, lambda d: d.execute_script(QUEUE_REQUESTS) >= asked + 3)  # 3 more 401s
    assert not form.is_displayed() and reopen.is_displayed()

    # A wrong key is refused in its own words.
    reopen.click()
    driver.find_element(By.ID, "auth-key").send_keys("esk_not-a-key")
    driver.find_element(By.CSS_SELECTOR, "#auth-form button[type=submit]").click()
    page.until(
        driver,
        lambda d: (
            form.is_displayed() and "não é válida" in d.find_element(By.ID, "auth-message").text
        ),
        message="a refused key was not said",
    )
    # The queues panel says so too, at its next refresh (it was seen to lag the banner).
    page.until(driver, lambda d: "chave de API inválida" in d.find_element(By.ID, "queues").text)

    # The right key, late: the carteira appears without a reload, and analysing works.
    driver.find_element(By.ID, "auth-key").send_keys(site.key)
    driver.find_element(By.CSS_SELECTOR, "#auth-form button[type=submit]").click()
    page.until(
        driver,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#pedidos [data-ruptura-badge]")) == 40,
        message="the carteira never loaded after the key",
    )
    assert not form.is_displayed()
    page.until(driver, lambda d: "ruptura" in d.find_element(By.ID, "queues").text)
    driver.find_element(By.ID, "analisar").click()
    page.until(
        driver,
        lambda d: "40 pedidos analisados" in d.find_element(By.ID, "analysis-status").text,
        60,
    )
    assert page.severe(driver, allowed=("401",)) == []


def test_with_auth_on_the_addon_without_a_key_or_with_a_wrong_one_says_so(
    start_site, chromium, page
) -> None:
    site = start_site(("ruptura",), auth=True)
    driver = chromium.driver
    driver.get(f"{site.url}/static/addon-demo.html")
    box = page.until(
        driver,
        lambda d: [
            b
            for b in d.find_elements(By.CLASS_NAME, "esteira-progress")
            if b.get_attribute("data-state") == "error"
        ],
    )[0]
    assert "Sem chave de API" in box.text
    assert set(_statuses(driver)) == {"sem_acesso"}
    badges = [t for t in page.contrast(driver) if t["badge"]]
    assert len(badges) == 31 and all(b["ratio"] >= 4.5 for b in badges), badges

    message = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        Esteira.setApiKey("esk_wrong");
        const client = new Esteira.RupturaClient({
          onError: (e) => done([e.status, e.code, e.message]),
        });
        client.run(["100001", "100002"]).then(() => client.error || done("no error"));"""
    )
    assert message[:2] == [401, "invalid_api_key"] and "inválida" in message[2], message


@pytest.mark.parametrize("site", [("ruptura",)], indirect=True)
def test_with_no_scraper_worker_the_lookup_says_why_it_waits(site, chromium, page) -> None:
    driver = chromium.driver
    driver.get(f"{site.url}/ui")
    # The notes are redrawn every refresh: read them inside the wait.
    notes = page.until(
        driver,
        lambda d: [
            n.text for n in d.find_elements(By.CSS_SELECTOR, "#queue-notes li[data-pool=scraper]")
        ],
        message="the queue panel never explained the scraper queue",
    )[0]
    assert "Nenhum worker online" in notes and "escalando" in notes
    driver.find_element(By.ID, "os-numero").send_keys(str(FIRST_OS + 30))
    driver.find_element(By.CSS_SELECTOR, "#os-form button").click()
    dialog = page.until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=dialog]"))[0]
    page.until(
        driver,
        lambda d: (
            "aguardando um worker subir"
            in dialog.find_element(By.CLASS_NAME, "esteira-modal-note").text
        ),
        message="'Na fila' was never explained",
    )
    assert "Na fila" in dialog.text and dialog.get_attribute("data-status") == "queued"
    assert [t for t in page.contrast(driver) if t["ratio"] < 4.5] == []


def test_with_the_portal_failing_the_lookup_ends_with_a_portal_error(
    start_site, chromium, page
) -> None:
    site = start_site(("scraper",), worker_env={"ESTEIRA_SCRAPE_MAX_RETRIES": "0"})
    httpx.put(f"{site.portal}/admin/switches", json={"error_rate": 1.0}).raise_for_status()
    driver = chromium.driver
    driver.get(f"{site.url}/ui")
    driver.find_element(By.ID, "os-numero").send_keys(str(FIRST_OS + 40))
    driver.find_element(By.CSS_SELECTOR, "#os-form button").click()
    dialog = page.until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=dialog]"))[0]
    page.until(driver, lambda d: dialog.get_attribute("data-status") == "failed", 90)
    assert dialog.get_attribute("data-error") == "portal_error"
    assert "O portal respondeu com erro" in dialog.text
    driver.find_element(By.CLASS_NAME, "esteira-modal-close").click()
    page.until(driver, lambda d: "failed (portal_error)" in d.find_element(By.ID, "tasks").text)
    page.until(
        driver,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, "#chart-outcomes rect[data-series=portal_error]"
        ),
    )
    assert [t for t in page.contrast(driver) if t["ratio"] < 4.5] == []


def test_the_api_docs_load_everything_from_the_gateway(site, chromium, page) -> None:
    driver = chromium.driver
    for path, title in (("/docs", ".info .title"), ("/redoc", "h1")):
        driver.get(f"{site.url}{path}")
        rendered = page.until(
            driver,
            lambda d, css=title: [e for e in d.find_elements(By.CSS_SELECTOR, css) if e.text],
            message=f"{path} never rendered",
        )
        assert rendered[0].text.startswith("Esteira")
        code = driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter((e) => e.initiatorType !== 'img').map((e) => e.name)"
        )
        assert code and all(url.startswith(site.url) for url in code), code
        # ReDoc's vendor logo is the one outside image: the page's policy blocks it.
        assert all("Content Security Policy" in m for m in page.severe(driver)), path


def test_a_long_poll_that_ran_out_is_followed_by_another_at_once_not_by_a_pause(
    start_site, chromium
) -> None:
    """A front end following a session nobody serves yet: its first long poll runs out its
    wait (20 s) with nothing new. It must ask again at once, so that when the gateway's standby
    takes the queue up (after the 30 s grace) the results reach it; a client that paused its
    poll interval (10 minutes here) after the run-out would still be asleep."""
    site = start_site(("scraper",))  # no ruptura worker
    driver = chromium.driver
    driver.get(f"{site.url}/ui")
    driver.set_script_timeout(150)
    outcome = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const results = [];
        const client = new Esteira.RupturaClient({
          pollMs: 600000, onResult: (r) => results.push(r.num_pedido),
        });
        client.run(["100001", "100002"]).then(
          () => done({ results: results, error: client.error && client.error.message }));"""
    )
    assert outcome == {"results": ["100001", "100002"], "error": None}


def test_a_session_post_caught_by_a_gateway_short_of_cpu_is_sent_again_not_given_up(
    start_site, chromium, page
) -> None:
    """The gateway is frozen (SIGSTOP, as the kernel freezes a pod at its CPU limit) while the
    page's session POST waits on Redis: it reads Redis's answer after its timeout and answers
    503 gateway_busy with Retry-After. The page sends the POST again after that wait, and its
    results come through the queue; the old client took it for an outage and fell back to the
    per-order endpoint (more work for the same busy gateway)."""
    site = start_site(
        ("ruptura",),
        # A long timeout leaves time to freeze the gateway while its command waits; no rate
        # limit and the queue's last check reused, so that the command waiting is the
        # session's own.
        api_env={
            "ESTEIRA_REDIS_TIMEOUT_SECONDS": "1",
            "ESTEIRA_TENANT_RATE_PER_SECOND": "0",
            "ESTEIRA_QUEUE_CHECK_SECONDS": "60",
        },
    )
    driver = chromium.driver
    driver.get(f"{site.url}/ui")
    driver.execute_script(
        """window.outcome = null;
        const results = [];
        let fallbacks = 0;
        const client = new Esteira.RupturaClient({
          onResult: (r) => results.push(r.num_pedido), onFallback: () => { fallbacks += 1; },
        });
        window.startSession = () => client.run(["100001", "100002"]).then(() => {
          const error = client.error && client.error.message;
          window.outcome = { results: results.sort(), fallbacks: fallbacks, error: error };
        });"""
    )
    assert site.redis.process is not None
    redis_pid = site.redis.process.pid
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        driver.execute_script("window.startSession();")
        time.sleep(0.3)  # the POST reaches the gateway, whose command waits on Redis
        os.kill(site.gateway_pid, signal.SIGSTOP)
        os.kill(redis_pid, signal.SIGCONT)  # Redis answers at once; the gateway reads it late
        time.sleep(1.5)
    finally:
        os.kill(redis_pid, signal.SIGCONT)
        os.kill(site.gateway_pid, signal.SIGCONT)
    outcome = page.until(driver, lambda d: d.execute_script("return window.outcome"), 60)
    assert outcome == {"results": ["100001", "100002"], "fallbacks": 0, "error": None}
    metrics = httpx.get(f"{site.url}/metrics").text
    busy = 'count{method="POST",route="/api/v1/ruptura/sessions",status="503"}'
    assert busy in metrics, "the POST was not caught by the freeze: the test proved nothing"
