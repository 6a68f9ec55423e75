"""A running stack for the browser tests (redis-server, the gateway, workers and the demo portal,
each a real process on a free loopback port) and what the tests measure in the page."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException

from esteira_cli.processes import free_port
from esteira_testing.components import RedisServer, seeded_database

DOCS = Path(__file__).parents[2] / "docs"


@dataclass
class Site:
    url: str
    redis: RedisServer
    portal: str
    gateway_pid: int
    key: str | None = None


@pytest.fixture
def start_site(own_redis_server, tmp_path, esteira_processes) -> Callable[..., Site]:
    """start(pools=..., auth=False, cors_origins="", worker_env={}, api_env={}) -> the
    gateway's Site."""

    def start(
        pools: tuple[str, ...] = ("ruptura", "scraper"),
        *,
        auth: bool = False,
        cors_origins: str = "",
        worker_env: dict[str, str] | None = None,
        api_env: dict[str, str] | None = None,
    ) -> Site:
        database_url = seeded_database(f"sqlite:///{tmp_path / 'ui.db'}", orders=300, products=60)
        portal_port, api_port = free_port(), free_port()
        esteira_processes("portal", ["portal", "--port", str(portal_port)], {}, port=portal_port)
        env = {
            "ESTEIRA_REDIS_URL": own_redis_server.url,
            "ESTEIRA_DATABASE_URL": database_url,
            "ESTEIRA_PORTAL_URL": f"http://127.0.0.1:{portal_port}",
            "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        }
        for pool in pools:
            port = free_port()
            esteira_processes(
                f"{pool}-worker",
                ["worker", pool],
                {**env, **(worker_env or {}), "ESTEIRA_METRICS_PORT": str(port)},
                port=port,
            )
        key = None
        gateway_env = {**env, "ESTEIRA_CORS_ORIGINS": cors_origins, **(api_env or {})}
        if auth:
            key = "esk_browser-" + secrets.token_urlsafe(16)
            gateway_env["ESTEIRA_API_KEYS"] = f"browser:{hashlib.sha256(key.encode()).hexdigest()}"
        else:
            gateway_env["ESTEIRA_AUTH_DISABLED"] = "true"
        gateway = esteira_processes(
            "api", ["api", "--port", str(api_port)], gateway_env, port=api_port
        )
        return Site(
            url=f"http://127.0.0.1:{api_port}",
            redis=own_redis_server,
            portal=f"http://127.0.0.1:{portal_port}",
            gateway_pid=gateway.process.pid,
            key=key,
        )

    return start


@pytest.fixture
def site(start_site, request) -> Site:
    return start_site(getattr(request, "param", ("ruptura", "scraper")))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def host_server(tmp_path) -> Iterator[tuple[Path, int]]:
    """A plain static web server on 127.0.0.1, another origin than the gateway: (its folder,
    its port)."""
    folder = tmp_path / "host"
    folder.mkdir()
    server = ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(_QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, server.server_address[1]
    server.shutdown()
    server.server_close()


def until(driver, condition, timeout: float = 30, message: str = ""):
    """condition(driver)'s first true value; an element redrawn while read counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition(driver)
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, message or "condition never held"
        time.sleep(0.1)


def severe(driver, allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not any(a in entry["message"] for a in allowed)
    ]


# WCAG 2.x contrast of every visible text in the page against what is painted behind it (the
# backgrounds of its ancestors, composited over white), computed by the browser itself.
CONTRAST_JS = """
const selector = arguments[0];
function rgba(value) {
  const parts = value.match(/[\\d.]+/g).map(Number);
  return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
}
function over(top, bottom) {
  const a = top[3];
  return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
}
function luminance(c) {
  const [r, g, b] = c.slice(0, 3).map((v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function background(el) {
  const layers = [];
  for (let n = el; n; n = n.parentElement) {
    const c = rgba(getComputedStyle(n).backgroundColor);
    if (c[3] > 0) { layers.push(c); }
    if (c[3] >= 1) { break; }
  }
  return layers.reverse().reduce((below, layer) => over(layer, below), [255, 255, 255, 1]);
}
function visible(el) {
  const box = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  return box.width > 0 && box.height > 0 && style.visibility !== "hidden";
}
function ownText(el) {
  return Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
}
const elements = Array.from(document.querySelectorAll(selector)).filter(
  (el) => !el.closest("svg") && visible(el) && (ownText(el) || el.matches("[data-ruptura-badge]"))
);
return elements.map((el) => {
  const back = background(el);
  const fore = over(rgba(getComputedStyle(el).color), back);
  const [hi, lo] = [luminance(fore), luminance(back)].sort((a, b) => b - a);
  return {
    text: el.textContent.trim().slice(0, 40),
    badge: el.matches("[data-ruptura-badge], .esteira-workers"),
    status: el.getAttribute("data-status"),
    ratio: Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100,
  };
});
"""


def contrast(driver, selector: str = "body *") -> list[dict[str, Any]]:
    """Every visible text under `selector`, with its contrast ratio."""
    result: list[dict[str, Any]] = driver.execute_script(CONTRAST_JS, selector)
    return result


def set_viewport(driver, width: int, height: int, mobile: bool = False) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


@dataclass(frozen=True)
class PageTools:
    """The helpers above, for the test modules (which, imported by pytest's importlib mode,
    cannot import this conftest)."""

    until: Callable[..., Any] = until
    severe: Callable[..., list[str]] = severe
    contrast: Callable[..., list[dict[str, Any]]] = contrast
    set_viewport: Callable[..., None] = set_viewport
    docs: Path = DOCS


@pytest.fixture
def page() -> PageTools:
    return PageTools()
