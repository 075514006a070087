"""The version, from one place: ``version`` in pyproject.toml, read back from the metadata that
installing the package (a wheel, or ``pip install -e .``) wrote. Nothing else states it.

A checkout that was never installed (only put on ``sys.path``) has no metadata; its version is
then :data:`NOT_INSTALLED`, a valid PEP 440 version that sorts before every release and says
what happened.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "oidc-adapter"
NOT_INSTALLED = "0+unknown"  # PEP 440: release 0 with the local label "unknown"


def installed_version() -> str:
    """The installed distribution's version, or :data:`NOT_INSTALLED`."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return NOT_INSTALLED


__version__ = installed_version()
