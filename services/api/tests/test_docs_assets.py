"""/docs and /redoc are served with assets from the gateway, no CDN."""

import re

import pytest

pytestmark = pytest.mark.integration


def test_the_docs_pages_load_their_assets_from_the_gateway(make_client, redis_url) -> None:
    client = make_client(redis_url)
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200, path
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls and all(url.startswith("/static-docs/") for url in urls), (path, urls)
        for url in urls:
            assert client.get(url).status_code == 200, url
    assert "fonts.googleapis" not in client.get("/redoc").text
    assert '"validatorUrl": null' in client.get("/docs").text
