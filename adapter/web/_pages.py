"""The pages a person sees when signing in goes wrong: refused, cancelled, expired, server down.

A browser gets a small readable page with a way to try again and a way back to the app; a
client that asks for JSON gets ``{"error": ..., "error_description": ...}``, anything else the
short plain-text answer. The page is a ``string.Template`` (``$title``, ``$message``,
``$retry``, ``$home``, all HTML-escaped), and an app can give its own with
``error-page = "templates/login-error.html"``.
"""

from __future__ import annotations

import html
from string import Template

from adapter.web._http import json_error, text, wants_json
from adapter.web._steps import Respond, WebRequest

DEFAULT_PAGE = Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}
a.button{display:inline-block;padding:.4rem 1rem;border:1px solid #888;border-radius:.3rem;
text-decoration:none;color:inherit}</style></head>
<body><h1>$title</h1><p>$message</p>
<p><a class="button" href="$retry">Try again</a> &nbsp;
<a href="$home">Back to the start page</a></p>
</body></html>
"""
)


def wants_page(request: WebRequest) -> bool:
    """Whether the request is a browser's page load or form submission (the logout POST): it
    asks for HTML."""
    return request.method in ("GET", "HEAD", "POST") and "text/html" in request.headers.get(
        "accept", ""
    )


def error_page(
    request: WebRequest,
    status: int,
    title: str,
    message: str,
    login_path: str,
    extra: list[tuple[str, str]] | list[str],
    template: Template | None = None,
    retry: str | None = None,
) -> Respond:
    """``message`` as a page for a browser (with ``title`` and a link to sign in again, or to
    ``retry`` when given), as JSON for a client that asks for it, as plain text otherwise."""
    if not wants_page(request):
        if wants_json(request.headers.get("accept", "")):
            return json_error(status, message, extra)
        return text(status, message, extra)
    root = request.root_path
    values = {
        "title": title,
        "message": message[:1].upper() + message[1:] + ".",
        "retry": retry or f"{root}{login_path}",
        "home": f"{root}/",
    }
    page = (template or DEFAULT_PAGE).safe_substitute(
        {key: html.escape(value) for key, value in values.items()}
    )
    plain = text(status, message, extra)
    kept = (header for header in plain.headers if header[0] != "Content-Type")
    return Respond(status, (("Content-Type", "text/html; charset=utf-8"), *kept), page.encode())
