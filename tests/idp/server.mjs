// Test identity server for the oidc-adapter integration and e2e tests: a real, OpenID Certified
// provider (panva/oidc-provider) on 127.0.0.1, configured by one JSON file.
//
//   node server.mjs CONFIG.json
//
// CONFIG.json (see tests/idp_server.py, which writes it):
//   port      number, 0 = any free port                              (default 0)
//   issuer    string; "{port}" is replaced by the bound port, a path  (default http://127.0.0.1:<port>)
//             such as /realms/test is served under that path (Keycloak-like URLs)
//   clients   array, passed to oidc-provider's `clients` option as-is (client metadata, snake_case)
//   ttl       {AccessToken, ClientCredentials, IdToken, RefreshToken, ...: seconds}, overrides
//   resource  the default resource indicator                          (default urn:oidc-adapter:test-api)
//   opaque_resource  a resource whose access tokens are opaque    (default urn:oidc-adapter:opaque-api)
//   accounts  {"<login>": {claims...}} merged over the generated claims of that account; read
//             again from CONFIG.json on every use, so a test can change a user's roles live
//   tls       {"key": PATH, "cert": PATH} (PEM): serve HTTPS with that certificate; the default
//             issuer is then https://127.0.0.1:<port>
//   admin_clients  [client_id, ...]: a stand-in for Keycloak's admin call POST
//             <base>/admin/realms/<realm>/clear-keys-cache (issuer <base>/realms/<realm>): a
//             bearer access token of this server for one of these clients (the stand-in for the
//             realm-management manage-realm role) makes every client with a jwks_uri forget its
//             cached keys (204, and the next signature check fetches them again); another
//             client's token gets 403, no valid token 401. Each call is logged
//             ({"event": "admin.clear-keys-cache", "client_id", "status"}).
//   internal_port  number (0 = any free port): a second, plain-HTTP listener on 127.0.0.1 serving
//             the SAME provider as if it were reached at the issuer's own scheme and host, the
//             way Keycloak with a fixed hostname answers on an internal address (Docker,
//             Kubernetes service names). Every request is then logged with the listener it came
//             in on ({"event": "request", "listener": "public" | "internal", ...}).
//   mtls      {"header": NAME, "verified_header": NAME} (defaults x-ssl-client-cert and
//             x-ssl-client-verify; {} takes both): mutual TLS (RFC 8705) behind a proxy that ends
//             TLS, asks for client certificates and forwards them (tests/reverse_proxy.py's
//             ReverseProxy with client_certificates=True): oidc-provider's features.mTLS with
//             certificate-bound access tokens (cnf.x5t#S256), tls_client_auth and
//             self_signed_tls_client_auth. The client certificate is `header` as nginx's
//             $ssl_client_escaped_cert sends it (the URL-escaped PEM); it counts as CA-verified
//             (needed by tls_client_auth) only when `verified_header` is SUCCESS (nginx's
//             $ssl_client_verify). tls_client_auth_subject_dn is an RFC 4514 string
//             ("CN=bank-app,O=Test"), compared RDN by RDN with the certificate's subject; the
//             tls_client_auth_san_* values exactly with its subjectAltName entries. The server
//             then trusts X-Forwarded-Proto/-Host (koa's `proxy`) on its main listener, and so
//             builds its URLs from what the proxy saw: give `issuer` the proxy's https URL.
//             Anyone who reaches the node port itself can claim any certificate: it listens on
//             127.0.0.1, for tests only.
//
// stdout carries `READY <issuer>` once the server accepts connections, preceded, with
// internal_port, by `INTERNAL http://127.0.0.1:<port>`; everything else (oidc-provider
// notices, our JSON log lines) goes to stderr.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

// oidc-provider prints its NOTICEs with console.info (stdout); keep stdout for the READY line.
console.info = console.error;

const { default: Provider } = await import('oidc-provider');

const log = (entry) => process.stderr.write(`${JSON.stringify({ ts: new Date().toISOString(), ...entry })}\n`);

const configPath = process.argv[2];
if (!configPath) {
  process.stderr.write('usage: node server.mjs CONFIG.json\n');
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const DEFAULT_RESOURCE = config.resource ?? 'urn:oidc-adapter:test-api';
// oidc-provider refuses to introspect or revoke JWT access tokens (unsupported_token_type), so
// tests of those endpoints ask for this resource, whose access tokens are opaque.
const OPAQUE_RESOURCE = config.opaque_resource ?? 'urn:oidc-adapter:opaque-api';
// Mutual TLS behind the proxy (config.mtls above): the client certificate as the proxy saw it.
const MTLS = config.mtls
  ? { header: 'x-ssl-client-cert', verified_header: 'x-ssl-client-verify', ...config.mtls }
  : undefined;
const ALL_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
// Algorithms we hold a server key for (RSA 2048 + EC P-256); HS256 uses the client secret.
const SERVER_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256'];

// Fresh server signing keys on every start (tests discover them from jwks_uri), unless the
// config gives private JWKs: then a test can forge well-signed tokens with bad claims.
const jwk = (type, options) => ({ ...crypto.generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' }), use: 'sig' });
log({ event: 'startup', step: 'keys' });
const jwks = config.jwks ?? { keys: [jwk('rsa', { modulusLength: 2048 }), jwk('ec', { namedCurve: 'P-256' })] };

// Any login name is accepted by the dev login page; its claims are generated from the name
// (plus config.accounts[name]). realm_access / resource_access mimic Keycloak's role claims.
function accountClaims(id) {
  return {
    sub: id,
    name: `Test User ${id}`,
    given_name: 'Test',
    family_name: `User ${id}`,
    preferred_username: id,
    email: `${id}@example.test`,
    email_verified: true,
    realm_access: { roles: ['user', 'offline_access'] },
    resource_access: { 'oidc-adapter-test-api': { roles: ['reader'] } },
    ...currentAccounts()[id],
  };
}

// The accounts as the config file says now (a test edits them to change roles at the server).
function currentAccounts() {
  try {
    return JSON.parse(fs.readFileSync(configPath, 'utf8')).accounts ?? {};
  } catch {
    return config.accounts ?? {};
  }
}

// The PEM client certificate the proxy passed on (URL-escaped, as nginx's
// $ssl_client_escaped_cert), or undefined when the client showed none.
function clientCertificate(ctx) {
  const escaped = ctx.get(MTLS.header);
  if (!escaped) return undefined;
  try {
    const pem = decodeURIComponent(escaped);
    return pem.includes('-----BEGIN CERTIFICATE-----') ? pem : undefined;
  } catch {
    return undefined;
  }
}

// An RFC 4514 distinguished name ("CN=bank-app,O=Test": the last RDN of the certificate first,
// commas between RDNs, backslash escapes) as the RDNs in certificate order, the way node's
// X509Certificate#subject lists them, one per line ("O=Test\nCN=bank-app"); attribute types
// upper-cased, spaces around the separators dropped. Escapes stay as written on both sides.
function dnRdns(dn, separator) {
  const rdns = [];
  let current = '';
  for (let i = 0; i < dn.length; i += 1) {
    if (dn[i] === '\\' && i + 1 < dn.length) {
      current += dn[i] + dn[i + 1];
      i += 1;
    } else if (dn[i] === separator) {
      rdns.push(current);
      current = '';
    } else {
      current += dn[i];
    }
  }
  rdns.push(current);
  return rdns.map((rdn) => {
    const eq = rdn.indexOf('=');
    return `${rdn.slice(0, eq).trim().toUpperCase()}=${rdn.slice(eq + 1).trim()}`;
  });
}

// The subjectAltName entries of one kind ('DNS', 'URI', 'IP Address', 'email').
function sanValues(certificate, kind) {
  return (certificate.subjectAltName ?? '').split(', ')
    .filter((entry) => entry.startsWith(`${kind}:`))
    .map((entry) => entry.slice(kind.length + 1).replace(/^"(.*)"$/, '$1'));
}

const SAN_KINDS = {
  tls_client_auth_san_dns: 'DNS',
  tls_client_auth_san_uri: 'URI',
  tls_client_auth_san_ip: 'IP Address',
  tls_client_auth_san_email: 'email',
};

function certificateSubjectMatches(ctx, property, expected) {
  const pem = clientCertificate(ctx);
  if (!pem) return false;
  const certificate = new crypto.X509Certificate(pem);
  let matches = false;
  if (property === 'tls_client_auth_subject_dn') {
    matches = JSON.stringify(dnRdns(certificate.subject, '\n')) === JSON.stringify(dnRdns(expected, ',').reverse());
  } else if (SAN_KINDS[property]) {
    matches = sanValues(certificate, SAN_KINDS[property]).includes(expected);
  }
  if (!matches) {
    log({
      event: 'mtls.subject_mismatch', property, expected, subject: certificate.subject, subject_alt_name: certificate.subjectAltName,
    });
  }
  return matches;
}

// Bind first, so that port 0 can be resolved before the issuer (which must contain the port)
// is given to the Provider constructor. Requests are only routed once the provider exists.
const server = config.tls
  ? https.createServer({ key: fs.readFileSync(config.tls.key), cert: fs.readFileSync(config.tls.cert) })
  : http.createServer();
const listen = (listener, wanted) => new Promise((resolve, reject) => {
  listener.once('error', reject);
  listener.listen(wanted, '127.0.0.1', resolve);
});
log({ event: 'startup', step: 'listen' });
await listen(server, config.port ?? 0);
const { port } = server.address();
const defaultIssuer = `${config.tls ? 'https' : 'http'}://127.0.0.1:{port}`;
const issuer = (config.issuer ?? defaultIssuer).replaceAll('{port}', String(port));
const internal = config.internal_port !== undefined ? http.createServer() : undefined;
if (internal) await listen(internal, config.internal_port);

const provider = new Provider(issuer, {
  clients: config.clients ?? [],
  jwks,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  findAccount: (ctx, id) => ({ accountId: id, claims: () => accountClaims(id) }),
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
    roles: ['realm_access', 'resource_access'],
  },
  // Keycloak puts the scope-requested claims into the ID token too; do the same.
  conformIdTokenClaims: false,
  // Authorization code always with PKCE (S256 is the only method oidc-provider v9 supports).
  pkce: { required: () => true },
  // Simple refresh-token policy: every code exchange by a client whose grant_types include
  // refresh_token gets one (like Keycloak); offline_access is not needed.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // Every refresh spends the refresh token and issues a new one, as Keycloak does with
  // "Revoke Refresh Token": two processes refreshing one session at once would end it.
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 3600,
    ClientCredentials: 600,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    ...config.ttl,
  },
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    // A logout here POSTs a logout token to each client's backchannel_logout_uri.
    backchannelLogout: { enabled: true },
    // The default login/consent pages (any login, any password): the browser tests use them.
    devInteractions: { enabled: true },
    // Every access token is for a resource server, and a JWT unless it is for OPAQUE_RESOURCE:
    // requests without `resource` get DEFAULT_RESOURCE, and the token endpoint reuses the
    // resource granted at authorization (as Keycloak, the code flow yields JWT access tokens).
    // Consequence: access tokens carry `aud`, so /me (userinfo) refuses them.
    // Signed request objects (JAR, RFC 9101) are accepted; a test may require them, and PAR,
    // through config.features (which replaces whole feature entries, as below).
    requestObjects: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => {
        if (oneOf) return oneOf.includes(DEFAULT_RESOURCE) ? DEFAULT_RESOURCE : oneOf;
        return DEFAULT_RESOURCE;
      },
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        const info = { scope: 'api:read api:write openid', audience: resourceIndicator };
        if (resourceIndicator === OPAQUE_RESOURCE) return { ...info, accessTokenFormat: 'opaque' };
        return { ...info, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
    ...config.features,
    // DPoP with server nonces (RFC 9449 §8): every token request must carry the current one,
    // so a client's use_dpop_nonce round is exercised (config.dpop_nonce).
    // Mutual TLS (RFC 8705) with the certificate the proxy forwards (config.mtls above).
    ...(MTLS ? {
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        getCertificate: clientCertificate,
        certificateAuthorized: (ctx) => ctx.get(MTLS.verified_header) === 'SUCCESS',
        certificateSubjectMatches,
      },
    } : {}),
    ...(config.dpop_nonce ? {
      dPoP: { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true },
    } : {}),
  },
  // oidc-provider's default methods, plus the mutual-TLS ones with config.mtls.
  clientAuthMethods: [
    'client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
    ...(MTLS ? ['tls_client_auth', 'self_signed_tls_client_auth'] : []),
  ],
  // Keycloak-like role claims in the JWT access tokens as well.
  extraTokenClaims: async (ctx, token) => {
    if (token.accountId) {
      const { realm_access, resource_access } = accountClaims(token.accountId);
      return { realm_access, resource_access };
    }
    if (token.kind === 'ClientCredentials') return { realm_access: { roles: ['service-account'] } };
    return undefined;
  },
  enabledJWA: {
    // Everything the adapter can sign a client assertion with (Keycloak's list).
    clientAuthSigningAlgValues: ['HS256', 'HS384', 'HS512', ...ALL_ALGS],
    idTokenSigningAlgValues: ['HS256', ...SERVER_ALGS],
    userinfoSigningAlgValues: SERVER_ALGS,
    introspectionSigningAlgValues: SERVER_ALGS,
    requestObjectSigningAlgValues: ['HS256', 'HS384', 'HS512', ...ALL_ALGS],
  },
  // oidc-provider guards its outgoing requests (client jwks_uri, ...) against special-use IP
  // addresses such as 127.0.0.1 by passing its own undici `dispatcher`. The clients in these
  // tests publish their keys on 127.0.0.1, so THIS test server drops that dispatcher.
  // Note: a client's JWKS is cached for max(60 s, Cache-Control max-age, Expires) and only
  // refetched after that, when verification with the cached keys fails.
  fetch: async (url, options) => {
    delete options.dispatcher;
    try {
      const response = await globalThis.fetch(url, options);
      log({ event: 'fetch', method: options.method ?? 'GET', url: String(url), status: response.status });
      return response;
    } catch (err) {
      log({ event: 'fetch.error', method: options.method ?? 'GET', url: String(url), message: err.message, cause: err.cause?.message });
      throw err;
    }
  },
});

// One JSON line on stderr per failed request, with oidc-provider's reason (error_detail),
// which is never sent to the client, so a failing Python test can show it.
function describe(ctx, err) {
  let clientId;
  try {
    clientId = ctx?.oidc?.client?.clientId ?? ctx?.oidc?.params?.client_id;
  } catch { /* the request never got far enough to have a client */ }
  const cause = err?.cause instanceof Error ? err.cause.message : undefined;
  return {
    method: ctx?.method,
    path: ctx?.path,
    client_id: clientId,
    error: err?.error ?? err?.name,
    error_description: err?.error_description,
    error_detail: err?.error_detail,
    message: err?.error ? undefined : err?.message,
    cause: cause !== err?.error_detail ? cause : undefined,
  };
}
const ERROR_EVENTS = [
  'authorization.error', 'grant.error', 'introspection.error', 'revocation.error', 'userinfo.error',
  'jwks.error', 'discovery.error', 'end_session.error', 'end_session_confirm.error',
  'end_session_success.error', 'pushed_authorization_request.error', 'backchannel.error',
];
for (const event of ERROR_EVENTS) provider.on(event, (ctx, err) => log({ event, ...describe(ctx, err) }));
// Pushed authorization requests (RFC 9126), and whether they carried a request object (JAR).
provider.on('pushed_authorization_request.success', (ctx, client) => log({
  event: 'par.success', client_id: client?.clientId, request_object: typeof (ctx.oidc?.body?.request ?? ctx.request.body?.request) === 'string',
}));
// Successful token calls too, so a test can count refreshes (the grant and the client only).
provider.on('grant.success', (ctx) => log({
  event: 'grant.success', grant_type: ctx.oidc?.params?.grant_type, client_id: ctx.oidc?.client?.clientId,
}));
provider.on('server_error', (ctx, err) => log({ event: 'server_error', ...describe(ctx, err), stack: err?.stack }));

log({ event: 'startup', step: 'clients' });
// oidc-provider validates static clients lazily, on first use; validate them now so that a bad
// client in a test's config fails the start-up with the reason instead of a later request.
for (const { client_id: clientId } of config.clients ?? []) {
  try {
    await provider.Client.find(clientId);
  } catch (err) {
    log({ event: 'config.error', client_id: clientId, error: err.error ?? err.name, error_description: err.error_description ?? err.message });
    process.exit(1);
  }
}

// The stand-in for Keycloak's clear-keys-cache (see admin_clients above). The bearer token is
// checked like any resource server would: this server's signature, its issuer, not expired.
const VERIFY = {
  RS256: ['sha256', {}],
  PS256: ['sha256', { padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }],
  ES256: ['sha256', { dsaEncoding: 'ieee-p1363' }],
};
function verifiedClaims(token) {
  const [header, payload, signature] = (token ?? '').split('.');
  if (!signature) return null;
  let alg;
  try { ({ alg } = JSON.parse(Buffer.from(header, 'base64url'))); } catch { return null; }
  if (!VERIFY[alg]) return null;
  const [hash, options] = VERIFY[alg];
  const data = Buffer.from(`${header}.${payload}`);
  for (const key of jwks.keys) {
    try {
      const publicKey = crypto.createPublicKey({ key, format: 'jwk' });
      if (crypto.verify(hash, data, { key: publicKey, ...options }, Buffer.from(signature, 'base64url'))) {
        const claims = JSON.parse(Buffer.from(payload, 'base64url'));
        return claims.iss === issuer && claims.exp > Date.now() / 1000 ? claims : null;
      }
    } catch { /* another key type: try the next key */ }
  }
  return null;
}
async function clearKeysCache(req, res) {
  const claims = verifiedClaims((req.headers.authorization ?? '').replace(/^Bearer /, ''));
  let status = 401;
  if (claims && (config.admin_clients ?? []).includes(claims.client_id)) {
    for (const { client_id: clientId, jwks_uri: jwksUri } of config.clients ?? []) {
      if (!jwksUri) continue;
      const keystore = (await provider.Client.find(clientId)).asymmetricKeyStore;
      keystore.freshUntil = 0;
      keystore.clear();
    }
    status = 204;
  } else if (claims) {
    status = 403;
  }
  log({ event: 'admin.clear-keys-cache', client_id: claims?.client_id, status });
  res.writeHead(status, status === 204 ? {} : { 'Content-Type': 'application/json' });
  res.end(status === 204 ? undefined : JSON.stringify({ error: status === 403 ? 'HTTP 403 Forbidden' : 'HTTP 401 Unauthorized' }));
}
const adminPath = (() => {
  const match = new URL(issuer).pathname.match(/^(.*)\/realms\/([^/]+)\/?$/);
  return match ? `${match[1]}/admin/realms/${match[2]}/clear-keys-cache` : null;
})();

// An issuer with a path (e.g. /realms/test) is mounted there, the way Express mounts an app:
// strip the prefix and keep it in req.originalUrl, from which oidc-provider builds its URLs.
const mountPath = new URL(issuer).pathname.replace(/\/$/, '');
const callback = provider.callback();
function route(req, res) {
  if (adminPath && req.method === 'POST' && req.url === adminPath) {
    clearKeysCache(req, res).catch((err) => {
      log({ event: 'admin.clear-keys-cache.error', message: err.message });
      res.writeHead(500).end();
    });
    return;
  }
  if (mountPath) {
    if (req.url !== mountPath && !req.url.startsWith(`${mountPath}/`) && !req.url.startsWith(`${mountPath}?`)) {
      res.writeHead(404).end();
      return;
    }
    req.originalUrl = req.url;
    req.url = req.url.slice(mountPath.length) || '/';
    if (req.url.startsWith('?')) req.url = `/${req.url}`;
  }
  callback(req, res);
}
// Behind the mTLS proxy the main listener trusts its X-Forwarded-* (koa's `proxy`): the URLs
// oidc-provider builds (discovery, ...) are then the proxy's https ones.
if (MTLS) provider.proxy = true;
if (internal) {
  // Both listeners trust X-Forwarded-* (koa's `proxy`), which only the internal one sets: to the
  // issuer's scheme and host, so that oidc-provider builds the same URLs on both. (With mtls
  // the public listener keeps the ones the proxy in front of it sets.)
  provider.proxy = true;
  const { protocol, host } = new URL(issuer);
  const forwarded = ['x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-for'];
  const tagged = (listener, headers) => (req, res) => {
    if (listener === 'internal' || !MTLS) for (const name of forwarded) delete req.headers[name];
    Object.assign(req.headers, headers);
    log({ event: 'request', listener, method: req.method, url: req.url });
    route(req, res);
  };
  server.on('request', tagged('public', {}));
  internal.on('request', tagged('internal', {
    'x-forwarded-proto': protocol.slice(0, -1),
    'x-forwarded-host': host,
  }));
} else {
  server.on('request', route);
}

function shutdown(signal) {
  log({ event: 'shutdown', signal });
  let open = internal ? 2 : 1;
  const closed = () => { open -= 1; if (open === 0) process.exit(0); };
  for (const listener of [server, internal]) {
    if (!listener) continue;
    listener.close(closed);
    listener.closeAllConnections(); // keep-alive connections would hold close() open
  }
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

if (internal) process.stdout.write(`INTERNAL http://127.0.0.1:${internal.address().port}\n`);
process.stdout.write(`READY ${issuer}\n`);
