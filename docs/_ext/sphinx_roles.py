"""A griffe extension for the Python API pages: the docstrings' reST roles as Markdown code.

The package's docstrings cite names the Sphinx way (``:class:`OIDCClient```,
``:meth:`~adapter.X.reload```); mkdocstrings renders Markdown, where the role would show as
text. Each role becomes inline code with the name as written (``~`` keeps the last part, as
Sphinx does). Loaded by mkdocs.yml (``plugins.mkdocstrings...extensions``); the docstrings in
the code stay as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj|const):`(~?)([^`]+)`")


def as_code(match: re.Match[str]) -> str:
    tilde, name = match.groups()
    return f"``{name.rsplit('.', 1)[-1] if tilde else name}``"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(as_code, obj.docstring.value)
