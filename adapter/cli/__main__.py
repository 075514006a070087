"""``python -m adapter.cli``: the ``oidc-adapter`` command."""

from adapter.cli import main

if __name__ == "__main__":  # imported (pkgutil.walk_packages, a test's import sweep): nothing runs
    raise SystemExit(main())
