"""``GET /docs``: the interactive API page, its assets served by the service itself, tried in Chromium."""

from __future__ import annotations

import contextlib
import json

import httpx2
import pytest
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.auth import hash_token
from datasvc.settings import PROJECT_ROOT, Settings
from tests.support.browser import Browser, chromium
from tests.support.servers import ThreadServer

HASH = "$2b$12$" + "d" * 53
ARTIFACTS = PROJECT_ROOT / "test-artifacts"  # kept after a run (CI uploads what it finds there)
GET_USER = ("get", "/api/v1/users/{id}")


def test_docs_page_and_its_assets_need_no_token(settings: Settings):
    secured = settings.with_overrides(auth_tokens=f"reader users:read {hash_token('t' * 32)}")
    with TestClient(create_app(secured)) as client:
        assert client.get("/api/v1/users/1").status_code == 401  # tokens are required ...
        page = client.get("/docs")  # ... but not for the page, as for /openapi.json
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'url: "openapi.json"' in page.text
        assert "validatorUrl: null" in page.text  # nothing leaves for validator.swagger.io
        for asset, kind in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")):
            assert f'"docs/{asset}"' in page.text
            served = client.get(f"/docs/{asset}")
            assert served.status_code == 200, asset
            assert served.headers["content-type"].startswith(kind)
            assert "//cdn" not in served.text[:2000]
        assert client.get("/docs/swagger-editor-bundle.js").status_code == 404  # a closed set of files
        assert client.get("/docs/..%2Fcore.py").status_code == 404


def _operations(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


LISTED = """Array.from(document.querySelectorAll('.opblock')).map(b => [
    b.querySelector('.opblock-summary-method').textContent.trim(),
    b.querySelector('.opblock-summary-path').getAttribute('data-path')])"""


def _find(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)})"


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no chromium (scripts/apt-deps installs it)")
def test_docs_page_in_chromium_lists_every_operation_and_runs_get_user(settings: Settings, request):
    with ThreadServer(settings) as server:
        created = httpx2.post(
            server.base_url + "/api/v1/users",
            json={"email": "docs@example.com", "username": "docs_page", "hashed_password": HASH},
        )
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        document = httpx2.get(server.base_url + "/openapi.json").json()
        expected = _operations(document)
        method, path = GET_USER
        operation = document["paths"][path][method]
        block = f"#operations-{operation['tags'][0]}-{operation['operationId']}"
        with Browser(timeout=15) as browser:  # bounded: each wait gives up after 15 s (~12 s in all here)
            try:
                browser.navigate(server.base_url + "/docs")
                count = f"document.querySelectorAll('.opblock').length >= {len(expected)}"
                browser.wait_for(count)
                listed = {tuple(pair) for pair in browser.evaluate(LISTED)}
                assert listed == expected
                loaded = browser.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
                assert loaded, "the page loads its assets"
                assert all(url.startswith(server.base_url + "/") for url in loaded), loaded  # offline: no CDN

                browser.click(f"{block} .opblock-summary-control")
                browser.click(f"{block} .try-out__btn")
                browser.type_into(f"{block} tr[data-param-name='id'] input", str(user_id))
                browser.click(f"{block} .execute")
                status = _find(f"{block} .live-responses-table tr.response .response-col_status")
                shown = browser.wait_for(f"{status} && {status}.textContent.trim()")
                assert shown == "200"
                body = _find(f"{block} .live-responses-table tr.response .microlight") + ".textContent"
                assert json.loads(browser.evaluate(body))["username"] == "docs_page"
            except BaseException:
                with contextlib.suppress(Exception):  # a browser that died cannot take one; keep its error
                    shot = browser.screenshot(ARTIFACTS / f"{request.node.name}.png")
                    print(f"screenshot of the page: {shot}")
                raise
