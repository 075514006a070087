"""The web layer: request handling shared by the ASGI and WSGI shells (routes, sessions,
bearer tokens, access rules, the pages a person sees)."""
