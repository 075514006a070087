"""The development identity server's pages: the sign-in form (pick a user, no password), the
signed-out page, the index and the error page, each under the same banner."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

BANNER = "development identity server \u2014 not for production"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; color: #222; }}
.banner {{ background: #b00020; color: #fff; padding: .6em 1em; font-weight: bold; }}
main {{ max-width: 40em; margin: 2em auto; padding: 0 1em; }}
button {{ display: block; width: 100%; margin: .5em 0; padding: .8em; font-size: 1em;
  text-align: left; cursor: pointer; }}
.roles {{ color: #555; font-size: .9em; }}
code {{ background: #f2f2f2; padding: 0 .2em; }}
</style></head>
<body><div class="banner" id="banner">{banner}</div>
<main><h1>{title}</h1>
{body}
</main></body></html>
"""


def page(title: str, body: str) -> str:
    """A whole page: the banner, the title, and ``body`` (already HTML)."""
    return _PAGE.format(title=escape(title), banner=escape(BANNER), body=body)


def sign_in_page(
    action: str,
    client_id: str,
    users: Mapping[str, tuple[str, ...]],
    params: Mapping[str, str],
    problem: str | None = None,
) -> str:
    """The sign-in form: one button per user (name and roles); the authorization request's
    parameters ride along in hidden fields."""
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in params.items()
        if name != "user"
    )
    buttons = "".join(
        f'<button type="submit" name="user" value="{escape(name)}">{escape(name)} '
        f'<span class="roles">({escape(", ".join(roles) or "no roles")})</span></button>'
        for name, roles in users.items()
    )
    warning = f'<p role="alert"><strong>{escape(problem)}</strong></p>' if problem else ""
    body = (
        f"<p>Sign in to <code>{escape(client_id)}</code> as one of these test users. "
        "There is no password: anyone who reaches this page can be anyone.</p>"
        f'{warning}<form method="post" action="{escape(action)}">{hidden}{buttons}</form>'
    )
    return page("Sign in", body)


def signed_out_page() -> str:
    return page("Signed out", "<p>You are signed out of the development identity server.</p>")


def error_page(title: str, message: str) -> str:
    return page(title, f'<p id="error">{escape(message)}</p>')


def index_page(
    issuer: str, client: str, users: Mapping[str, tuple[str, ...]], notes: Iterable[str]
) -> str:
    """What this server is: its issuer, its one client, its users."""
    rows = "".join(
        f"<li><code>{escape(name)}</code>: {escape(', '.join(roles) or 'no roles')}</li>"
        for name, roles in users.items()
    )
    extra = "".join(f"<p>{escape(note)}</p>" for note in notes)
    discovery = f"{issuer}/.well-known/openid-configuration"
    body = (
        f"<p>Issuer <code>{escape(issuer)}</code> "
        f'(<a href="{escape(discovery)}">discovery</a>), client <code>{escape(client)}</code>.'
        f"</p><p>Users:</p><ul>{rows}</ul>{extra}"
    )
    return page("oidc-adapter dev-server", body)
