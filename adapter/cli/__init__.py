"""The ``oidc-adapter`` command: create and inspect client keys, check and convert configuration.

Exit status 0 on success and 2 on any user error, which is reported as one line on stderr
naming the file, field or flag and the fix. Passwords come from environment variables named on
the command line, or from a prompt on a terminal; they are never accepted as arguments (they
would land in shell history and ``ps``) and never printed.

One module per command group, each command's options declared beside its handler
(``add_<command>`` next to the function it sets as the handler), as pip declares
``add_options`` beside ``run``: ``keys_generate``, ``keys_rotate``, ``keys_revoke``,
``keys_show`` (show, export-cert), ``tokens`` (jwks, token, assertion) and ``config`` (check,
convert); ``common`` holds what they share. The key commands read the namespace once, into a
:class:`~adapter.cli.keys_generate.NewKeyRequest`. The key and token commands load the
configuration without the middleware's own settings: they work where only the client's
credentials are at hand.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from adapter._version import NOT_INSTALLED, __version__
from adapter.cli import (
    config,
    dev_server,
    doctor,
    init,
    keys_generate,
    keys_remove,
    keys_revoke,
    keys_rotate,
    keys_show,
    tokens,
)
from adapter.cli.common import (
    PROG,
    UsageError,
    choose_tenant,
    fail,
    log_warnings_as_the_command,
    print_warning,
)
from adapter.errors import AdapterError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (also the console script's entry point)."""
    parser = _parser()
    args = parser.parse_args(argv)
    warnings.showwarning = print_warning
    log_warnings_as_the_command()
    try:
        choose_tenant(args)
        result: int = args.handler(args)
        return result
    except (AdapterError, UsageError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")
    except Exception as exc:  # a bug: report it without a traceback that may hold secrets
        print(f"{PROG}: internal error ({type(exc).__name__}); please report it", file=sys.stderr)
        return 1


def _version() -> str:
    """``adapter.__version__``, saying so when this checkout was never installed."""
    if __version__ == NOT_INSTALLED:
        return f"{__version__} (not installed: pip install -e . to read the version)"
    return __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Client keys and configuration for oidc-adapter."
    )
    parser.add_argument(
        "--version", action="version", version=f"{PROG} {_version()}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    keys = commands.add_parser("keys", help="create and inspect client keys")
    verbs = keys.add_subparsers(dest="keys_command", required=True, metavar="VERB")
    keys_generate.add_generate(verbs)
    keys_rotate.add_rotate(verbs)
    keys_revoke.add_revoke(verbs)
    keys_revoke.add_clear_cache(verbs)
    keys_remove.add_remove(verbs)
    keys_show.add_show(verbs)
    keys_show.add_export_cert(verbs)
    tokens.add_jwks(commands)
    tokens.add_token(commands)
    tokens.add_assertion(commands)
    configuration = commands.add_parser("config", help="check or convert a configuration")
    verbs = configuration.add_subparsers(dest="config_command", required=True, metavar="VERB")
    config.add_check(verbs)
    config.add_convert(verbs)
    dev_server.add_dev_server(commands)
    init.add_init(commands)
    doctor.add_doctor(commands)
    return parser
