"""The API's own description: `/openapi.json` (OpenAPI 3, built from the code by app/spec.py)
and `/docs` (Swagger UI, its files from the swagger-ui-bundle package: no CDN, works offline)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template_string, url_for
from swagger_ui_bundle import swagger_ui_path

from app import spec
from app.apidoc import doc

bp = Blueprint(
    "openapi", __name__, static_folder=str(swagger_ui_path), static_url_path="/docs/assets"
)

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>devcmd API</title>
  <link rel="stylesheet" href="{{ asset('swagger-ui.css') }}">
  <link rel="icon" type="image/png" href="{{ asset('favicon-32x32.png') }}" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{{ asset('swagger-ui-bundle.js') }}"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: {{ document_url | tojson }},
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
    });
  </script>
</body>
</html>
"""


@bp.get("/openapi.json")
@doc("This document (OpenAPI 3.0)", answers={200: "application/json"})
def document():
    """Built once per process from the routes and their schemas."""
    if "openapi" not in current_app.extensions:
        current_app.extensions["openapi"] = spec.build(current_app)
    return current_app.extensions["openapi"]


@bp.get("/docs")
@doc("Swagger UI for /openapi.json", answers={200: "text/html"})
def docs():
    """An interactive view of the document."""
    return render_template_string(
        PAGE,
        asset=lambda name: url_for("openapi.static", filename=name),
        document_url=url_for("openapi.document"),
    )
