"""The version, from one place: ``version`` in pyproject.toml, read back from the metadata that
installing the package (a wheel, or ``pip install -e .``) wrote. Nothing else states it.

A checkout that was never installed (only put on ``sys.path``) has no metadata; its version is
then :data:`NOT_INSTALLED`, a valid PEP 440 version that sorts before every release and says
what happened.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

DISTRIBUTION = "oidc-adapter"
NOT_INSTALLED = "0+unknown"  # PEP 440: release 0 with the local label "unknown"


@functools.cache
def installed_version() -> str:
    """The installed distribution's version, or :data:`NOT_INSTALLED`. Read when first asked
    for: ``importlib.metadata`` costs about 20 ms to import, which every cold start of an app
    would pay for a string it rarely reads (``make bench``'s import row)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return NOT_INSTALLED


if TYPE_CHECKING:
    __version__: str
else:

    def __getattr__(name: str) -> Any:
        if name == "__version__":
            return installed_version()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
