"""The release as a user gets it (issue 21, item 3; ``make release-check`` runs this file).

``python -m build`` makes the sdist and the wheel from a copy of the source tree (the working
tree gets no build/, dist/ or egg-info), ``twine check --strict`` passes them, and each holds
the package and nothing else of the checkout; the metadata is pyproject.toml's (version,
classifiers PyPI knows, URLs, keywords, the README as the description). The wheel is installed
with the ``asgi`` extra (and uvicorn, which the Starlette example runs on) into a fresh
virtualenv in a temporary directory outside the checkout, and with that installed package:
``oidc-adapter --version`` prints the pyproject version, ``oidc-adapter config check`` passes
the README's configuration example (its keystores made by the installed ``keys generate``), and
alice signs in through the Starlette example at the test identity server with
``private_key_jwt``, the server fetching the app's keys from its ``/k_jwks``.

Missing build, twine or trove-classifiers (the ``test`` extra), or no package index, skips the
test on a developer's machine and fails it in CI.
"""

from __future__ import annotations

import email
import email.message
import importlib.util
import re
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI
from tests.fresh_install import (
    ROOT,
    copy_examples,
    copy_source,
    free_port,
    make_venv,
    run,
    serving,
    sign_in,
    skip_if_offline,
)
from tests.idp_server import IdentityServer
from tests.web_client import web_client

pytestmark = pytest.mark.integration

PASSWORD = "release-test-keystore-password"
SESSION_SECRET = "release-test-session-secret-0123456789abcdef"
CLIENT_ID = "release-app"


@dataclass(frozen=True)
class Release:
    source: Path  # the copy the distributions were built from
    project: dict[str, Any]  # its pyproject.toml's [project] table
    sdist: Path
    wheel: Path
    venv: Path  # the wheel installed with [asgi] and uvicorn
    work: Path  # a directory outside the checkout to run the installed package in


def _require_module(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        message = f"{name} is not installed (pip install -e '.[test]'; make test does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    for module in ("build", "twine", "trove_classifiers"):
        _require_module(module)
    tmp = tmp_path_factory.mktemp("release")
    source = copy_source(tmp / "source")
    dist = tmp / "dist"
    built = run(sys.executable, "-m", "build", "--outdir", dist, source, timeout=300)
    skip_if_offline(built, "python -m build")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    venv = make_venv(tmp / "venv", sys.executable, f"{wheel}[asgi]", "uvicorn>=0.30")
    work = tmp / "work"
    work.mkdir()
    return Release(source, project, sdist, wheel, venv, work)


def package_files(source: Path) -> set[str]:
    """Every file of the ``adapter`` package in the source tree, as a path in a wheel."""
    return {
        path.relative_to(source).as_posix()
        for path in (source / "adapter").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_twine_check_passes(release: Release) -> None:
    checked = run(sys.executable, "-m", "twine", "check", "--strict", release.sdist, release.wheel)

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_wheel_holds_the_package_and_its_metadata_only(release: Release) -> None:
    dist_info = f"oidc_adapter-{release.project['version']}.dist-info/"
    with zipfile.ZipFile(release.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"{dist_info}entry_points.txt").decode()

    package = {name for name in names if name.startswith("adapter/")}
    assert package == package_files(release.source), (
        "the wheel's adapter/ differs from the source's (a data file needs "
        f"[tool.setuptools.package-data]): {sorted(package ^ package_files(release.source))}"
    )
    assert "adapter/py.typed" in package
    others = names - package
    assert all(name.startswith(dist_info) for name in others), sorted(others)
    assert re.search(r"^oidc-adapter = adapter\.cli:main$", entry_points, re.M), entry_points


def test_the_sdist_holds_the_package_and_what_builds_it_only(release: Release) -> None:
    root = f"oidc_adapter-{release.project['version']}/"
    with tarfile.open(release.sdist) as sdist:
        names = {member.name for member in sdist.getmembers() if member.isfile()}

    assert all(name.startswith(root) for name in names), sorted(names)[:5]
    inside = {name.removeprefix(root) for name in names}
    package = {name for name in inside if name.startswith("adapter/")}
    assert package == package_files(release.source), sorted(package ^ package_files(release.source))
    rest = {name for name in inside - package if not name.startswith("oidc_adapter.egg-info/")}
    licences = {name for name in rest if name.startswith(("LICENSE", "LICENCE", "NOTICE"))}
    # No tests, examples, docs, benchmarks, virtualenv or CI files: the package and its build.
    assert rest - licences == {"PKG-INFO", "README.md", "pyproject.toml", "setup.cfg"}, sorted(rest)


def test_the_metadata_is_pyprojects(release: Release) -> None:
    import trove_classifiers

    project = release.project
    with zipfile.ZipFile(release.wheel) as wheel:
        text = wheel.read(f"oidc_adapter-{project['version']}.dist-info/METADATA").decode()
    metadata = email.message_from_string(text)  # core metadata is UTF-8 (the README's µ)
    assert isinstance(metadata, email.message.Message)

    assert metadata["Name"] == "oidc-adapter"
    assert metadata["Version"] == project["version"]
    assert metadata["License-Expression"] == project["license"]
    assert metadata["Requires-Python"] == project["requires-python"]
    classifiers = metadata.get_all("Classifier") or []
    assert classifiers == project["classifiers"]
    unknown = set(classifiers) - trove_classifiers.classifiers
    assert not unknown, f"PyPI refuses unknown classifiers: {sorted(unknown)}"
    assert {"Typing :: Typed", "Operating System :: OS Independent"} <= set(classifiers)
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert metadata["Keywords"] == ",".join(project["keywords"])
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert urls == project["urls"]
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert description.strip() == (release.source / "README.md").read_text().strip()


def test_the_installed_command_prints_the_pyproject_version(release: Release) -> None:
    version = run(release.venv / "bin/oidc-adapter", "--version", cwd=release.work)
    imported = run(
        release.venv / "bin/python", "-I", "-c",
        "import adapter; print(adapter.__file__); print(adapter.__version__)",
        cwd=release.work,
    )  # fmt: skip

    assert version.returncode == 0, version.stderr
    assert version.stdout == f"oidc-adapter {release.project['version']}\n"
    assert imported.returncode == 0, imported.stderr
    where, found = imported.stdout.splitlines()
    assert Path(where).is_relative_to(release.venv), where  # the installed package
    assert found == release.project["version"]


def readme_configuration() -> str:
    """The README's configuration example: its TOML block with ``[[credentials.keys]]``."""
    blocks = re.findall(r"^```toml\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
    examples = [block for block in blocks if "[[credentials.keys]]" in block]
    assert len(examples) == 1, (
        "README.md should hold one TOML configuration example with [[credentials.keys]]: "
        "the release check runs `oidc-adapter config check` on it with the installed package"
    )
    return str(examples[0])


def generate_keystore(release: Release, out: Path, alias: str, password_env: str) -> None:
    """A PKCS#12 keystore made by the installed ``oidc-adapter keys generate``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    made = run(
        release.venv / "bin/oidc-adapter", "keys", "generate", "--alias", alias,
        "--out", out, "--store-password-env", password_env,
        cwd=release.work, env={"PATH": str(release.venv / "bin"), password_env: PASSWORD},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr


def test_the_installed_command_checks_the_readme_configuration(release: Release) -> None:
    text = readme_configuration()
    config = release.work / "readme" / "adapter.toml"
    config.parent.mkdir()
    config.write_text(text)
    parsed = tomllib.loads(text)
    environment = {"PATH": str(release.venv / "bin")}
    for key in parsed["credentials"]["keys"]:
        variable = key["password-env"]
        environment[variable] = PASSWORD
        alias = key.get("alias", parsed["client-id"])
        generate_keystore(release, config.parent / key["keystore"], alias, variable)

    checked = run(release.venv / "bin/oidc-adapter", "config", "check", config,
                  cwd=config.parent, env=environment)  # fmt: skip

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert parsed["issuer"] in checked.stdout
    assert parsed["client-id"] in checked.stdout
    assert parsed["credentials"]["method"] in checked.stdout
    assert PASSWORD not in checked.stdout + checked.stderr


def test_alice_signs_in_through_the_installed_starlette_example(release: Release) -> None:
    apps = copy_examples(release.work / "apps", "starlette_app")
    keystore = release.work / "signin" / "app.p12"
    generate_keystore(release, keystore, CLIENT_ID, "KEYSTORE_PASSWORD")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # private_key_jwt, the server fetching the app's public keys from its /k_jwks (Keycloak's
    # "Use JWKS URL"): the installed package reads the keystore, serves the JWKS and signs.
    client = web_client("", client_id=CLIENT_ID, base=base, jwks_uri=f"{base}/k_jwks",
                        token_endpoint_auth_method="private_key_jwt",
                        token_endpoint_auth_signing_alg="RS256")  # fmt: skip
    del client["client_secret"]
    with IdentityServer([client], tmp_dir=release.work) as idp:
        config = keystore.parent / "adapter.toml"
        config.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "{CLIENT_ID}"\n'
            f'session-secret = "{SESSION_SECRET}"\n\n[credentials]\nmethod = "private_key_jwt"\n'
            f'\n[[credentials.keys]]\nkeystore = "{keystore}"\n'
            f'password-env = "KEYSTORE_PASSWORD"\nalias = "{CLIENT_ID}"\n'
        )
        config.chmod(0o600)
        environment = {"PATH": str(release.venv / "bin"), "OIDC_ADAPTER_CONFIG": str(config),
                       "EXAMPLE_API_URL": base, "KEYSTORE_PASSWORD": PASSWORD}  # fmt: skip
        command: list[str | Path] = [release.venv / "bin/python", "-m", "uvicorn", "--factory",
                   "examples.starlette_app.app:create_app", "--host", "127.0.0.1",
                   "--port", str(port)]  # fmt: skip
        with serving(command, cwd=apps, env=environment, url=f"{base}/"):
            profile = sign_in(base, idp.issuer)
            jwks = httpx.get(f"{base}/k_jwks", timeout=10).json()

    assert "<p id='name'>alice</p>" in profile, profile[:300]  # signed in, as alice
    assert [key["kty"] for key in jwks["keys"]] == ["RSA"], jwks  # what the server verified
