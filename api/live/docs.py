"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), served whole by the
app: no CDN, so they work on a machine without internet, and under a Content-Security-Policy of
the app's own files only (no inline script: each page starts its viewer from a small script
served here).

The viewers' files come from the `fastapi-offline` package (Swagger UI's bundle and stylesheet,
ReDoc's standalone bundle), mounted at `ASSETS`.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

#: Where the viewers' files are served.
ASSETS = "/docs-assets"
ASSET_FOLDER = Path(fastapi_offline.__file__).parent / "static"

#: Starts Swagger UI on the page's `#swagger-ui` element, with the document its
#: `data-openapi-url` names. No validator badge: it would send the document to a third party.
SWAGGER_START = """\
window.addEventListener("load", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
"""

_SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="icon" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{root}/docs/start.js"></script>
</body>
</html>
"""

# ReDoc starts by itself on a <redoc spec-url> element; the page's margin is the bundle's.
_REDOC_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title>
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<noscript>ReDoc needs JavaScript; the document itself is at {openapi_url}</noscript>
<redoc spec-url="{openapi_url}"></redoc>
<script src="{assets}/redoc.standalone.js"></script>
</body>
</html>
"""


def add_docs(app: FastAPI) -> None:
    """Serve `/docs`, `/redoc` and their files from this machine. The app must be made with
    `docs_url=None, redoc_url=None` (FastAPI's own pages load from a CDN)."""
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("add_docs: make the app with docs_url=None and redoc_url=None")
    openapi_path = app.openapi_url or "/openapi.json"
    app.mount(ASSETS, StaticFiles(directory=ASSET_FOLDER), name="docs-assets")

    def fill(page: str, request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(page.format(
            title=escape(app.title), root=escape(root), assets=escape(root + ASSETS),
            openapi_url=escape(root + openapi_path)))

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return fill(_SWAGGER_PAGE, request)

    @app.get("/docs/start.js", include_in_schema=False)
    async def swagger_ui_start() -> Response:
        return Response(SWAGGER_START, media_type="text/javascript")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return fill(_REDOC_PAGE, request)
