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
//   acr_values  ["silver", "gold", ...], lowest level first: oidc-provider's acrValues, a stand-in
//             for Keycloak's step-up authentication (acr-to-LoA mapping, a higher level meaning a
//             second factor). A login issues the highest configured level that the authorization
//             request names (acr_values, or the claims parameter's id_token.acr value(s)), else the
//             lowest one; a request naming a level above the session's asks for a login again.
//             `acr` is then in the ID token (natively) AND in the JWT access tokens (as Keycloak
//             puts it there). Each login is logged ({"event": "login", "login", "acr", "client_id"}).
//   token_exchange  true: Keycloak 26.2's "standard token exchange" (V2, RFC 8693) at the token
//             endpoint; see tokenExchange() below for the rules. A client takes part when its
//             grant_types include urn:ietf:params:oauth:grant-type:token-exchange (the stand-in
//             for the client's "Standard token exchange" switch). Each exchange is logged
//             ({"event": "token_exchange", "client_id", "audience", "outcome": "issued" | "refused"}).
//   introspect_jwt_access_tokens  true: JWT access tokens can be introspected (RFC 7662), as at
//             Keycloak (oidc-provider alone refuses them with unsupported_token_type). On as well
//             as soon as a client has lightweight_access_tokens.
//   userinfo_only_claims  true: the scopes' claims only at the UserInfo endpoint, not in the ID
//             token of a code flow (oidc-provider's conformIdTokenClaims).
//   authorization  {"resource_server"?, "resources": [...], "grants": {...}}: Keycloak's
//             Authorization Services (the UMA grant on the token endpoint, the Protection API
//             under <issuer>/authz/protection, <issuer>/.well-known/uma2-configuration), what it
//             reproduces and what not, and its log events ("uma.grant", "uma.protection",
//             "uma.configuration"): see authorization.mjs's header.
//   introspection_audience_check  true: introspection answers {"active": false} unless the
//             calling client is the token's client or named in its aud (Keycloak's newer rule,
//             "Token introspection now validates audience claim"); default: oidc-provider's
//             policy (any confidential client may introspect any token).
//
// Extra client metadata (any client, always recognised):
//   lightweight_access_tokens  true: Keycloak's "Always use lightweight access token": this
//             client's JWT access tokens carry no role claims (realm_access, resource_access);
//             introspection still answers them for the token.
//   included_client_audiences  [client_id, ...]: Keycloak's Audience mapper ("Included Client
//             Audience"): these client_ids join the aud of the client's JWT access tokens (aud then
//             is an array, the resource indicator first), so those clients may exchange them.
//
// Always on: GET /test/frame?src=<url> on the server's own origin answers an HTML page whose only
// content is <iframe src="url"> (http(s) URLs on 127.0.0.1 / localhost only, else 400), to show
// e.g. a front-channel logout endpoint framed by the issuer's origin. Each introspection call is
// logged ({"event": "introspection", "client_id", "status", "active"}).
//
// stdout carries `READY <issuer>` once the server accepts connections, preceded, with
// internal_port, by `INTERNAL http://127.0.0.1:<port>`; everything else (oidc-provider
// notices, our JSON log lines) goes to stderr.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as querystring from 'node:querystring';

// oidc-provider prints its NOTICEs with console.info (stdout); keep stdout for the READY line.
console.info = console.error;

const { default: Provider, errors, interactionPolicy } = await import('oidc-provider');
const { authorizationStandIn, UMA_GRANT } = await import('./authorization.mjs');
// The AsyncLocalStorage oidc-provider runs each request in: which client a key fetch is for.
const { default: als } = await import('oidc-provider/lib/helpers/als.js');

const log = (entry) => process.stderr.write(`${JSON.stringify({ ts: new Date().toISOString(), ...entry })}\n`);

const configPath = process.argv[2];
if (!configPath) {
  process.stderr.write('usage: node server.mjs CONFIG.json\n');
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const DEFAULT_RESOURCE = config.resource ?? 'urn:oidc-adapter:test-api';
// With config.authorization every client may use the UMA grant, as at Keycloak (no switch).
if (config.authorization) {
  for (const client of config.clients ?? []) {
    client.grant_types = [...new Set([...(client.grant_types ?? ['authorization_code']), UMA_GRANT])];
  }
}
// oidc-provider refuses to introspect or revoke JWT access tokens (unsupported_token_type), so
// tests of those endpoints ask for this resource, whose access tokens are opaque.
const OPAQUE_RESOURCE = config.opaque_resource ?? 'urn:oidc-adapter:opaque-api';
// Mutual TLS behind the proxy (config.mtls above): the client certificate as the proxy saw it.
const MTLS = config.mtls
  ? { header: 'x-ssl-client-cert', verified_header: 'x-ssl-client-verify', ...config.mtls }
  : undefined;
// Keycloak 26 stand-ins (see the header): step-up levels, lowest first; token exchange V2;
// introspection of JWT access tokens (needed by lightweight access tokens).
const ACR_VALUES = config.acr_values ?? [];
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_INTROSPECTION = !!config.introspect_jwt_access_tokens
  || (config.clients ?? []).some((client) => client.lightweight_access_tokens === true);
// The claims a lightweight access token leaves out: the Keycloak-like role claims below.
const ROLE_CLAIMS = ['realm_access', 'resource_access'];
// Key management algorithms a client may ask for (Keycloak's, less RSA1_5, and oidc-provider's
// symmetric defaults), and content encryptions.
const ENCRYPTION_ALGS = ['RSA-OAEP', 'RSA-OAEP-256', 'ECDH-ES', 'ECDH-ES+A128KW', 'ECDH-ES+A192KW', 'ECDH-ES+A256KW', 'A128KW', 'A256KW', 'dir'];
const ENCRYPTION_ENCS = ['A128CBC-HS256', 'A192CBC-HS384', 'A256CBC-HS512', 'A128GCM', 'A192GCM', 'A256GCM'];
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

// -- acr (config.acr_values): Keycloak's step-up authentication -------------------------------
// The levels an authorization request names: acr_values, and the claims parameter's
// id_token.acr value / values.
function requestedAcrs(params) {
  const values = new Set(typeof params?.acr_values === 'string' ? params.acr_values.split(' ') : []);
  try {
    const claims = typeof params?.claims === 'string' ? JSON.parse(params.claims) : params?.claims;
    const acr = claims?.id_token?.acr;
    if (typeof acr?.value === 'string') values.add(acr.value);
    for (const value of Array.isArray(acr?.values) ? acr.values : []) values.add(value);
  } catch { /* a malformed claims parameter names no level */ }
  return values;
}
// The highest configured level the request names, or undefined when it names none.
function highestRequestedAcr(params) {
  const requested = requestedAcrs(params);
  return [...ACR_VALUES].reverse().find((value) => requested.has(value));
}
// The level a login reaches: the highest one asked for, else the lowest (the first factor).
const acrForLogin = (params) => highestRequestedAcr(params) ?? ACR_VALUES[0];

// oidc-provider's default prompts plus a step-up check: a request naming a level above the
// session's asks for a login again (the "second factor"), unless it comes from that login.
function stepUpPolicy() {
  const policy = interactionPolicy.base();
  policy.get('login').checks.add(new interactionPolicy.Check(
    'acr_step_up',
    'a higher authentication level (acr) was requested',
    (ctx) => {
      const wanted = highestRequestedAcr(ctx.oidc.params);
      if (!wanted || !ctx.oidc.session.accountId || ctx.oidc.result?.login) {
        return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      }
      return ACR_VALUES.indexOf(ctx.oidc.session.acr) < ACR_VALUES.indexOf(wanted)
        ? interactionPolicy.Check.REQUEST_PROMPT
        : interactionPolicy.Check.NO_NEED_TO_PROMPT;
    },
  ));
  return policy;
}

// Where a token's authentication came from (for its acr): the code, refresh token, ... of the
// token request that issues it.
function grantSource(ctx) {
  try {
    const { entities } = ctx.oidc;
    return entities.AuthorizationCode ?? entities.RefreshToken ?? entities.DeviceCode
      ?? entities.BackchannelAuthenticationRequest;
  } catch {
    return undefined;
  }
}

// -- token exchange: what an exchanged access token is made of (see tokenExchange) ------------
const exchangeDetails = new WeakMap(); // AccessToken -> { audiences, acr, serviceAccount, filter }

// -- JWT access token introspection -------------------------------------------------------------
// oidc-provider keeps no record of the JWT access tokens it issues. With JWT_INTROSPECTION each
// one is also stored, as oidc-provider stores an opaque token, under `jwt-at-<jti>`; the
// introspection endpoint (see the middleware below) looks a JWT up under that name once its
// signature is verified. The record keeps the token's full extra claims: a lightweight access
// token's role claims are then still answered by introspection.
const jwtAlias = (jti) => `jwt-at-${jti}`;
async function rememberJwt(token, payload) {
  const record = {};
  for (const key of token.constructor.IN_PAYLOAD) {
    if (token[key] !== undefined) record[key] = token[key];
  }
  Object.assign(record, {
    iat: payload.iat, exp: payload.exp, jti: token.jti, kind: token.kind, aud: payload.aud, extra: token.extra,
  });
  const ttl = Math.max(1, payload.exp - Math.floor(Date.now() / 1000));
  await token.adapter.upsert(jwtAlias(token.jti), record, ttl);
}

// The client whose jwks_uri a fetch is for: the request's client when it owns that URL (e.g. an
// ID token encrypted for it), else the configured owner(s) of the URL.
function jwksOwner(url) {
  const owners = (config.clients ?? [])
    .filter((client) => {
      try {
        return client.jwks_uri && new URL(client.jwks_uri).href === url;
      } catch {
        return false;
      }
    })
    .map((client) => client.client_id);
  if (!owners.length) return undefined;
  let current;
  try {
    current = als.getStore()?.oidc?.client?.clientId;
  } catch { /* no client in this request */ }
  return owners.includes(current) ? current : owners.join(' ');
}

const provider = new Provider(issuer, {
  clients: config.clients ?? [],
  jwks,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  findAccount: (ctx, id) => ({ accountId: id, claims: () => accountClaims(id) }),
  // Keycloak-like client settings as extra client metadata (see the header).
  extraClientMetadata: {
    properties: ['lightweight_access_tokens', 'included_client_audiences'],
    validator(ctx, key, value) {
      if (value === undefined) return;
      if (key === 'lightweight_access_tokens' && typeof value !== 'boolean') {
        throw new errors.InvalidClientMetadata('lightweight_access_tokens must be a boolean');
      }
      if (key === 'included_client_audiences'
        && (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item))) {
        throw new errors.InvalidClientMetadata('included_client_audiences must be an array of client_ids');
      }
    },
  },
  ...(ACR_VALUES.length ? { acrValues: ACR_VALUES, interactions: { policy: stepUpPolicy() } } : {}),
  claims: {
    // With acr_values, `acr` is always in the ID token, as Keycloak's "acr" client scope puts it.
    openid: ACR_VALUES.length ? ['sub', 'acr'] : ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
    roles: ['realm_access', 'resource_access'],
  },
  // Keycloak puts the scope-requested claims into the ID token too; do the same (unless the
  // test asks for them at the UserInfo endpoint only: config.userinfo_only_claims).
  conformIdTokenClaims: config.userinfo_only_claims === true,
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
    // Keycloak's newer rule: only the token's client, or a client in its aud, sees it active.
    ...(config.introspection_audience_check ? {
      introspection: {
        enabled: true,
        ...config.features?.introspection,
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId
          || [token.aud ?? []].flat().includes(client.clientId),
      },
    } : {}),
  },
  // oidc-provider's default methods, plus the mutual-TLS ones with config.mtls.
  clientAuthMethods: [
    'client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
    ...(MTLS ? ['tls_client_auth', 'self_signed_tls_client_auth'] : []),
  ],
  // Keycloak-like role claims in the JWT access tokens as well (and, with acr_values, the acr of
  // the authentication behind the token). An exchanged token keeps only the client roles of the
  // clients its audience parameter named (Keycloak's V2 filtering).
  extraTokenClaims: async (ctx, token) => {
    const exchange = exchangeDetails.get(token);
    let claims;
    if (exchange?.serviceAccount) {
      claims = { realm_access: { roles: ['service-account'] } };
    } else if (token.accountId) {
      const { realm_access, resource_access } = accountClaims(token.accountId);
      claims = { realm_access, resource_access };
    } else if (token.kind === 'ClientCredentials') {
      claims = { realm_access: { roles: ['service-account'] } };
    }
    if (exchange?.filter && claims?.resource_access) {
      const kept = Object.entries(claims.resource_access).filter(([name]) => exchange.audiences.includes(name));
      claims.resource_access = kept.length ? Object.fromEntries(kept) : undefined;
    }
    if (ACR_VALUES.length) {
      const acr = exchange ? exchange.acr : grantSource(ctx)?.acr;
      if (acr) claims = { ...claims, acr };
    }
    return claims;
  },
  formats: {
    customizers: {
      // The JWT access tokens' last touches: an exchanged token's audiences and azp; a client's
      // included_client_audiences; no role claims for a lightweight_access_tokens client.
      jwt: async (ctx, token, jwt) => {
        const { client } = token;
        const exchange = exchangeDetails.get(token);
        if (exchange) {
          jwt.payload.aud = exchange.audiences.length === 1 ? exchange.audiences[0] : exchange.audiences;
          jwt.payload.azp = token.clientId;
        } else if (client?.included_client_audiences?.length) {
          const aud = [jwt.payload.aud].flat().filter(Boolean);
          for (const clientId of client.included_client_audiences) if (!aud.includes(clientId)) aud.push(clientId);
          jwt.payload.aud = aud;
        }
        if (client?.lightweight_access_tokens === true) {
          for (const claim of ROLE_CLAIMS) delete jwt.payload[claim];
        }
        if (JWT_INTROSPECTION) await rememberJwt(token, jwt.payload);
      },
    },
  },
  enabledJWA: {
    // Everything the adapter can sign a client assertion with (Keycloak's list).
    clientAuthSigningAlgValues: ['HS256', 'HS384', 'HS512', ...ALL_ALGS],
    idTokenSigningAlgValues: ['HS256', ...SERVER_ALGS],
    userinfoSigningAlgValues: SERVER_ALGS,
    introspectionSigningAlgValues: SERVER_ALGS,
    requestObjectSigningAlgValues: ['HS256', 'HS384', 'HS512', ...ALL_ALGS],
    // Encrypted ID tokens, userinfo, introspection and authorization responses (features
    // .encryption) with the client's public keys (jwks_uri) or secret: Keycloak's algorithms.
    idTokenEncryptionAlgValues: ENCRYPTION_ALGS,
    idTokenEncryptionEncValues: ENCRYPTION_ENCS,
    userinfoEncryptionAlgValues: ENCRYPTION_ALGS,
    userinfoEncryptionEncValues: ENCRYPTION_ENCS,
    introspectionEncryptionAlgValues: ENCRYPTION_ALGS,
    introspectionEncryptionEncValues: ENCRYPTION_ENCS,
    authorizationEncryptionAlgValues: ENCRYPTION_ALGS,
    authorizationEncryptionEncValues: ENCRYPTION_ENCS,
  },
  // oidc-provider guards its outgoing requests (client jwks_uri, ...) against special-use IP
  // addresses such as 127.0.0.1 by passing its own undici `dispatcher`. The clients in these
  // tests publish their keys on 127.0.0.1, so THIS test server drops that dispatcher.
  // Note: a client's JWKS is cached for max(60 s, Cache-Control max-age, Expires) and only
  // refetched after that, when verification with the cached keys fails; encryption to a client
  // (features.encryption) refetches only a stale set, and needs a key with "use": "enc" (or no
  // use) for the alg, else invalid_client_metadata "no suitable encryption key found (<alg>)".
  // A fetch of a client's jwks_uri (signature checks of its assertions, encryption to it) is
  // logged with that client_id and "purpose": "jwks_uri".
  fetch: async (url, options) => {
    delete options.dispatcher;
    const owner = jwksOwner(String(url));
    const about = owner ? { client_id: owner, purpose: 'jwks_uri' } : {};
    try {
      const response = await globalThis.fetch(url, options);
      log({ event: 'fetch', method: options.method ?? 'GET', url: String(url), status: response.status, ...about });
      return response;
    } catch (err) {
      log({ event: 'fetch.error', method: options.method ?? 'GET', url: String(url), message: err.message, cause: err.cause?.message, ...about });
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

// acr_values: the dev login page knows nothing of levels; a login reaches the level the request
// asked for (acrForLogin), and says so in the log.
if (ACR_VALUES.length) {
  const finished = provider.interactionFinished.bind(provider);
  provider.interactionFinished = async (req, res, result, options) => {
    if (result?.login && result.login.acr === undefined) {
      const { params } = await provider.interactionDetails(req, res);
      const acr = acrForLogin(params);
      result = { ...result, login: { ...result.login, acr } };
      log({ event: 'login', login: result.login.accountId, acr, client_id: params.client_id });
    }
    return finished(req, res, result, options);
  };
}

// The introspection endpoint: one log line per call; `Accept: application/jwt` taken as RFC
// 9701's application/token-introspection+jwt (a JWT answer, with features.jwtIntrospection, for
// a client with introspection_signed_response_alg); with JWT_INTROSPECTION a JWT access token of
// this server is looked up under its stored name (rememberJwt), an unknown or forged one is
// inactive.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/token/introspection') {
    await next();
    return;
  }
  if (ctx.get('accept') === 'application/jwt') ctx.req.headers.accept = 'application/token-introspection+jwt';
  if (JWT_INTROSPECTION && ctx.is('application/x-www-form-urlencoded')) {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const body = querystring.parse(Buffer.concat(chunks).toString());
    if (typeof body.token === 'string' && body.token.split('.').length === 3) {
      const verified = verifiedJws(body.token);
      const jti = verified?.header.typ === 'at+jwt' ? verified.claims.jti : undefined;
      body.token = jwtAlias(typeof jti === 'string' ? jti : 'unknown');
    }
    ctx.req.body = body; // oidc-provider reads an already-read body from here
  }
  await next();
  let clientId;
  try {
    clientId = ctx.oidc.client?.clientId ?? ctx.oidc.params?.client_id;
  } catch { /* refused before a client was known */ }
  let active;
  if (ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body)) {
    ({ active } = ctx.body);
  } else if (typeof ctx.body === 'string' && ctx.body.split('.').length === 3) {
    try {
      active = JSON.parse(Buffer.from(ctx.body.split('.')[1], 'base64url')).token_introspection?.active;
    } catch { /* not a JWS */ }
  }
  log({ event: 'introspection', client_id: clientId, status: ctx.status, active });
});

// -- token exchange (config.token_exchange) ----------------------------------------------------
// Keycloak 26.2's "standard token exchange" (V2), as documented in Keycloak's guide
// docs/guides/securing-apps/token-exchange.adoc ("Standard token exchange": "How to enable",
// "Request and response parameters", "Token exchange - Additional details") and implemented in
// org.keycloak.protocol.oidc.tokenexchange.StandardTokenExchangeProvider (error texts from it):
//  - the requesting client is enabled for it (stand-in: its grant_types name the grant; else
//    oidc-provider's invalid_request "requested grant type is not allowed for this client") and
//    authenticates as for any grant; a public client (auth method none) is refused:
//    400 invalid_client "Public client is not allowed to exchange token";
//  - subject_token and subject_token_type are required, the type must be the access token type:
//    400 invalid_request "Parameter 'subject_token' required for standard token exchange" /
//    "Parameter 'subject_token_type' required for standard token exchange" / "Parameter
//    'subject_token' supports access tokens only"; requested_subject, requested_issuer and
//    subject_issuer (V1 only) are refused the same way ("... is not supported for standard token
//    exchange");
//  - the subject token is an access token of this server, valid now (a JWT access token: this
//    server's signature, typ at+jwt, its issuer, not expired; an opaque one: oidc-provider's
//    AccessToken / ClientCredentials record), else 400 invalid_request "Invalid token"; a
//    sender-constrained one (cnf) only when it was issued to the caller (the binding proof itself
//    is not checked here);
//  - requested_token_type: the access token type (the default). Keycloak issues a refresh token
//    only to a client with "Allow refresh token in Standard Token Exchange" (default: No) and an
//    ID token on request; this stand-in has neither: any other type is 400 invalid_request
//    "requested_token_type unsupported", what Keycloak answers with that switch at No;
//  - each `audience` is an existing client_id, else 400 invalid_client "Audience not found";
//    without one the audience is the caller;
//  - the caller was issued the subject token (its client_id / azp) or is named in its aud, else
//    403 access_denied "Client is not within the token audience";
//  - scope: the requested scopes, which must all be in the subject token's scope (downscoping
//    only, as with Keycloak's downscope-assertion-grant-enforcer executor), else 400
//    invalid_scope "Invalid scopes: <scope>"; without one, the subject token's scope.
// The answer: a JWT access token like this server's others (the resource server's RS256 key,
// typ at+jwt) with aud = the audience(s), sub = the subject token's sub, azp and client_id =
// the caller, the user's role claims (client roles only of the named audiences, when named),
// the subject token's acr (with acr_values); issued_token_type = the access token type, no
// refresh token. Never a new session: the token's lifetime is ttl.AccessToken.
class ExchangeRefused extends errors.OIDCProviderError {
  constructor(status, error, description) {
    super(status, error);
    this.error_description = description;
    this.expose = true;
  }
}

// The claims of a subject token this server issued and that is valid now, else null.
async function subjectTokenClaims(value) {
  if (value.split('.').length === 3) {
    const verified = verifiedJws(value);
    if (!verified || verified.header.typ !== 'at+jwt') return null;
    const { claims } = verified;
    if (claims.iss !== issuer || !(claims.exp > Date.now() / 1000)) return null;
    return { ...claims, serviceAccount: claims.sub === claims.client_id };
  }
  const token = await provider.AccessToken.find(value) ?? await provider.ClientCredentials.find(value);
  if (!token?.isValid) return null;
  return {
    sub: token.accountId ?? token.clientId,
    client_id: token.clientId,
    aud: token.aud,
    scope: token.scope,
    acr: token.extra?.acr,
    cnf: token.isSenderConstrained() ? {} : undefined,
    serviceAccount: token.kind === 'ClientCredentials',
  };
}

async function clientExists(clientId) {
  try {
    return !!(await provider.Client.find(clientId));
  } catch {
    return false;
  }
}

async function exchangeToken(ctx, client, params, requested) {
  const refuse = (description, error = 'invalid_request', status = 400) => new ExchangeRefused(status, error, description);
  for (const name of ['requested_subject', 'requested_issuer', 'subject_issuer']) {
    if (params[name] !== undefined) throw refuse(`Parameter '${name}' is not supported for standard token exchange`);
  }
  if (!params.subject_token) throw refuse("Parameter 'subject_token' required for standard token exchange");
  if (!params.subject_token_type) throw refuse("Parameter 'subject_token_type' required for standard token exchange");
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) throw refuse("Parameter 'subject_token' supports access tokens only");
  const subject = await subjectTokenClaims(params.subject_token);
  if (!subject) throw refuse('Invalid token');
  const holder = subject.client_id ?? subject.azp;
  if (subject.cnf && holder !== client.clientId) {
    throw refuse('Sender-constrained token exchange rejected as the token was not issued for the requesting client');
  }
  if ((params.requested_token_type ?? ACCESS_TOKEN_TYPE) !== ACCESS_TOKEN_TYPE) throw refuse('requested_token_type unsupported');
  const audiences = requested.length ? [...new Set(requested)] : [client.clientId];
  for (const audience of audiences) {
    if (!(await clientExists(audience))) throw refuse('Audience not found', 'invalid_client');
  }
  if (client.clientAuthMethod === 'none') throw refuse('Public client is not allowed to exchange token', 'invalid_client');
  if (holder !== client.clientId && ![subject.aud ?? []].flat().includes(client.clientId)) {
    throw refuse('Client is not within the token audience', 'access_denied', 403);
  }
  const granted = new Set((subject.scope ?? '').split(' ').filter(Boolean));
  let scope = subject.scope || undefined;
  if (params.scope) {
    const asked = [...new Set(params.scope.split(' ').filter(Boolean))];
    if (asked.some((item) => !granted.has(item))) throw refuse(`Invalid scopes: ${params.scope}`, 'invalid_scope');
    scope = asked.join(' ') || undefined;
  }

  const token = new provider.AccessToken({
    accountId: subject.sub, client, scope, gty: 'token_exchange',
  });
  exchangeDetails.set(token, {
    audiences, acr: subject.acr, serviceAccount: subject.serviceAccount, filter: requested.length > 0,
  });
  token.resourceServer = new provider.ResourceServer(audiences[0], {
    audience: audiences[0], scope, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } },
  });
  ctx.oidc.entity('AccessToken', token);
  const accessToken = await token.save();
  ctx.body = {
    access_token: accessToken,
    token_type: token.tokenType,
    expires_in: token.expiration,
    issued_token_type: ACCESS_TOKEN_TYPE,
    scope,
  };
  return { subject_client_id: holder, sub: subject.sub, scope };
}

async function tokenExchange(ctx) {
  const { client, params } = ctx.oidc;
  const requested = [params.audience ?? []].flat().filter(Boolean);
  const entry = {
    event: 'token_exchange',
    client_id: client.clientId,
    audience: (requested.length ? [...new Set(requested)] : [client.clientId]).join(' '),
  };
  try {
    const issued = await exchangeToken(ctx, client, params, requested);
    log({ ...entry, outcome: 'issued', ...issued });
  } catch (err) {
    log({ ...entry, outcome: 'refused', error: err.error ?? err.name, error_description: err.error_description ?? err.message });
    throw err;
  }
}
if (config.token_exchange) {
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange, [
    'subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'scope',
    'requested_subject', 'requested_issuer', 'subject_issuer',
  ], ['audience']);
}

// -- Keycloak Authorization Services (config.authorization): see authorization.mjs's header ----
const authorization = config.authorization
  ? authorizationStandIn({ config, issuer, log, jwks, subjectClaims: subjectTokenClaims, accountClaims })
  : null;
if (authorization) {
  provider.registerGrantType(UMA_GRANT, authorization.grant, authorization.parameters, authorization.duplicates);
}

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
// A JWS signed with one of this server's keys: its { header, claims }, else null.
function verifiedJws(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) return null;
  const [header, payload, signature] = parts;
  let protectedHeader;
  try { protectedHeader = JSON.parse(Buffer.from(header, 'base64url')); } catch { return null; }
  if (!VERIFY[protectedHeader?.alg]) return null;
  const [hash, options] = VERIFY[protectedHeader.alg];
  const data = Buffer.from(`${header}.${payload}`);
  for (const key of jwks.keys) {
    try {
      const publicKey = crypto.createPublicKey({ key, format: 'jwk' });
      if (crypto.verify(hash, data, { key: publicKey, ...options }, Buffer.from(signature, 'base64url'))) {
        return { header: protectedHeader, claims: JSON.parse(Buffer.from(payload, 'base64url')) };
      }
    } catch { /* another key type: try the next key */ }
  }
  return null;
}
// ... that is also this issuer's and not expired: its claims.
function verifiedClaims(token) {
  const claims = verifiedJws(token)?.claims;
  return claims && claims.iss === issuer && claims.exp > Date.now() / 1000 ? claims : null;
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
// GET /test/frame?src=<url>: the issuer's origin framing a page of an app on this machine (see
// the header), for browser tests of front-channel logout.
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function framePage(req, res) {
  const src = new URL(req.url, 'http://127.0.0.1').searchParams.get('src');
  let allowed = false;
  try {
    const url = new URL(src);
    allowed = ['http:', 'https:'].includes(url.protocol) && ['127.0.0.1', 'localhost'].includes(url.hostname);
  } catch { /* no URL at all */ }
  log({ event: 'test.frame', src, status: allowed ? 200 : 400 });
  if (!allowed) {
    res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('src must be an http(s) URL on 127.0.0.1 or localhost\n');
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(`<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>frame</title></head><body><iframe src="${escapeHtml(src)}"></iframe></body></html>\n`);
}

function route(req, res) {
  if (req.method === 'GET' && req.url.split('?')[0] === '/test/frame') {
    framePage(req, res);
    return;
  }
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
  if (authorization?.route(req, res)) return;
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
