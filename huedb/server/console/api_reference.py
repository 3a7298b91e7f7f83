"""The API reference at `/docs`: one HTML page rendered on the server from the app's OpenAPI
schema, with no script at all and nothing loaded from another origin.

FastAPI's default `/docs` and `/redoc` load Swagger UI / ReDoc from a CDN into this origin,
where the console keeps its token in sessionStorage: a changed CDN file could read it. This
page replaces them (also at `/redoc` and `/docs/oauth2-redirect`, the paths FastAPI served);
`/openapi.json` stays the machine-readable schema."""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
METHODS = ("get", "post", "put", "patch", "delete")
STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#1d1d1f}code{font:13px ui-monospace,monospace}h2{font-size:1.05rem;margin:2rem 0 .3rem}"
    "table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;"
    "text-align:left;vertical-align:top}.method{font-weight:bold;text-transform:uppercase}"
)
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def type_text(schema: dict[str, Any]) -> str:
    """A JSON schema as a short type: `GetRecords`, `string[]`, `integer | null`."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(type_text(option) for option in schema[union])
    if schema.get("type") == "array":
        return type_text(schema.get("items", {})) + "[]"
    if "enum" in schema:
        return " | ".join(repr(value) for value in schema["enum"])
    return str(schema.get("type", "any"))


def anchor(method: str, path: str) -> str:
    """The id of an operation's section: its method and path (operation ids may repeat)."""
    return method + path


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _body_schema(content: dict[str, Any]) -> str:
    return ", ".join(
        f"{media}: {type_text(entry.get('schema', {}))}" for media, entry in content.items()
    )


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    parts = [
        f'<section id="{escape(anchor(method, path))}">'
        f'<h2><code class="method">{method}</code> <code>{escape(path)}</code></h2>',
        f"<p>{escape(operation.get('summary', ''))}</p>",
    ]
    if "description" in operation:
        parts.append(f"<p>{escape(operation['description'])}</p>")
    parameters = [
        (p["name"], p["in"], "yes" if p.get("required") else "no", type_text(p.get("schema", {})))
        for p in operation.get("parameters", [])
    ]
    if parameters:
        parts.append(_table(("parameter", "in", "required", "type"), parameters))
    if "requestBody" in operation:
        body = _body_schema(operation["requestBody"].get("content", {}))
        parts.append(f"<p>Body: <code>{escape(body)}</code></p>")
    responses = [
        (status, answer.get("description", ""), _body_schema(answer.get("content", {})))
        for status, answer in operation.get("responses", {}).items()
    ]
    parts.append(_table(("status", "meaning", "body"), responses))
    return "".join(parts) + "</section>"


def _schema(name: str, schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = [
        (field, type_text(spec), "yes" if field in required else "no")
        for field, spec in schema.get("properties", {}).items()
    ]
    return (
        f'<section id="schema-{escape(name)}"><h2><code>{escape(name)}</code></h2>'
        + _table(("field", "type", "required"), rows)
        + "</section>"
    )


def render_page(schema: dict[str, Any], openapi_url: str) -> str:
    """The whole reference page for an OpenAPI schema."""
    info = schema["info"]
    operations = [
        (method, path, spec[method])
        for path, spec in schema["paths"].items()
        for method in METHODS
        if method in spec
    ]
    contents = "".join(
        f'<li><a href="#{escape(anchor(method, path))}"><code>{method.upper()} {escape(path)}'
        f"</code></a> {escape(op.get('summary', ''))}</li>"
        for method, path, op in operations
    )
    schemas = schema.get("components", {}).get("schemas", {})
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info['title'])} API reference</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} {escape(info['version'])}: API reference</h1>"
        f"<p>{escape(info.get('description', ''))} The OpenAPI schema: "
        f'<a href="{escape(openapi_url)}"><code>{escape(openapi_url)}</code></a>.</p>'
        f"<ul>{contents}</ul>"
        + "".join(_operation(method, path, op) for method, path, op in operations)
        + "<h1>Schemas</h1>"
        + "".join(_schema(name, spec) for name, spec in schemas.items())
        + "</body></html>"
    )


@router.api_route(PATHS[0], methods=["GET", "HEAD"])
@router.api_route(PATHS[1], methods=["GET", "HEAD"])
@router.api_route(PATHS[2], methods=["GET", "HEAD"])
def api_reference(request: Request) -> Response:
    """The API reference page."""
    openapi_url = request.scope.get("root_path", "") + (request.app.openapi_url or "")
    body = render_page(request.app.openapi(), openapi_url).encode()
    headers = {**HEADERS, "Content-Length": str(len(body))}
    content = b"" if request.method == "HEAD" else body
    return Response(content, media_type="text/html; charset=utf-8", headers=headers)
