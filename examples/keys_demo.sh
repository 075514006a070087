#!/usr/bin/env bash
# `make demo`: create a client key the way ops would, configure it, and show what the identity
# server will be given: the configuration summary, the certificate and the /k_jwks document.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
rm -rf demo-keys && mkdir demo-keys

# Passwords come from the environment or a file, never from the command line.
(umask 077 && head -c 18 /dev/urandom | base64 > demo-keys/keystore.password)
DEMO_KEYSTORE_PASSWORD="$(cat demo-keys/keystore.password)"
export DEMO_KEYSTORE_PASSWORD

echo "== a new RS256 client key in a PKCS#12 keystore"
$BIN/oidc-adapter keys generate --alias demo-app --out demo-keys/client-2026.p12 \
  --store-password-env DEMO_KEYSTORE_PASSWORD --subject "CN=demo-app,O=oidc-adapter demo"
echo
echo "== and the next key (EC P-256), staged to take over by itself"
$BIN/oidc-adapter keys generate --alias demo-app-next --out demo-keys/client-next.pem --alg ES256 \
  --store-password-env DEMO_KEYSTORE_PASSWORD

cat > demo-keys/adapter.toml <<'TOML'
issuer = "http://127.0.0.1:9000/realms/demo"
client-id = "demo-app"

[credentials]
method = "private_key_jwt"
assertion-lifetime = 60

[[credentials.keys]]
keystore = "client-2026.p12"
password-file = "keystore.password"
alias = "demo-app"
state = "active"

[[credentials.keys]]
keystore = "client-next.pem"
key-password-file = "keystore.password"
activate-at = "2099-01-01T00:00:00Z"
TOML

echo
echo "== oidc-adapter config check --config demo-keys/adapter.toml"
$BIN/oidc-adapter config check --config demo-keys/adapter.toml
echo
echo "== the certificate to import into the identity server (active key)"
$BIN/oidc-adapter keys export-cert --config demo-keys/adapter.toml
echo
echo "== what /k_jwks will serve (oidc-adapter jwks --config demo-keys/adapter.toml)"
$BIN/oidc-adapter jwks --config demo-keys/adapter.toml | python3 -m json.tool
echo
echo "The files are in demo-keys/ (the keystore password is in demo-keys/keystore.password)."
