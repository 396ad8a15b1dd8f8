"""``GET /docs``: an interactive page over ``/openapi.json`` (Swagger UI), served by the service itself.

The assets come from the ``swagger-ui-py`` wheel (Swagger UI 5, the first to read OpenAPI 3.1), served
from the installed package: no CDN, so the page works offline and behind a firewall. Only the two files
the page loads are reachable, from a closed set, never a path from the request. Like ``/openapi.json``,
the page needs no token (it holds no data); its "Try it out" calls the API as any caller would, with the
token entered under "Authorize" when tokens are configured. It is a page, not an API operation, so the
OpenAPI document does not list it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from datasvc.errors import NotFound

# Relative URLs, so the page also works under a path prefix added by a proxy: from /docs, "docs/x" is
# /docs/x and "openapi.json" is /openapi.json.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>datasvc API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
      validatorUrl: null  // else the page sends the document's URL to validator.swagger.io
    });
  </script>
</body>
</html>
"""

ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
}


def assets_dir() -> Path | None:
    """Swagger UI's files in the installed ``swagger-ui-py`` package (located without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if all((static / name).is_file() for name in ASSETS) else None


def routes() -> list[Route]:
    """``/docs`` and its two assets; without the package, ``/docs`` says what to install."""
    static = assets_dir()

    async def page(request: Request) -> Response:
        if static is None:
            raise NotFound("the API page needs the swagger-ui-py package: pip install swagger-ui-py")
        return HTMLResponse(PAGE)

    async def asset(request: Request) -> Response:
        name = request.path_params["asset"]
        if static is None or name not in ASSETS:
            raise NotFound(f"no route matches {request.url.path}")
        # Immutable for a given package version; an hour keeps reloads cheap without pinning a stale one.
        return FileResponse(static / name, media_type=ASSETS[name], headers={"cache-control": "max-age=3600"})

    return [
        Route("/docs", page, methods=["GET"]),
        Route("/docs/{asset}", asset, methods=["GET"]),
    ]
