// Keycloak Authorization Services stand-in for the test identity server (server.mjs, opt-in with
// config.authorization): the UMA grant on the token endpoint, the Protection API and the UMA
// discovery document, with resources, scopes and per-user grants from the configuration.
//
// config.authorization:
//   resource_server  the client_id of the resource server (default: the first client): the
//             audience of UMA grants, the only client whose PAT the Protection API accepts
//   resources  [{ "name", "uris": [...], "scopes": [...], "type"?, "id"? }]; id defaults to a
//             stable "res-<n>" (n: position from 1)
//   grants    { "<login>": ["Resource Name#scope", "Resource Name" (every scope of it), ...] };
//             resources by name or id. A service account (client_credentials, or the UMA grant
//             of an authenticated client without subject_token) is "service-account-<client_id>",
//             as Keycloak names its user.
//
// Reproduced from Keycloak (Authorization Services guide: "Obtaining permissions", "Protection
// API", "Managing resources", "Managing permission requests"; AuthorizationTokenService):
//  - POST <token endpoint>, grant_type=urn:ietf:params:oauth:grant-type:uma-ticket, either with
//    `Authorization: Bearer <the user's access token>` (no client authentication: the client is
//    the token's azp/client_id, as in the guide's curl examples) or with client authentication
//    (any method oidc-provider knows) and `subject_token=<the user's access token>` (without
//    one: the client's service account); every client may use the grant (server.mjs adds it to
//    each client's grant_types, as Keycloak has no switch for it);
//  - `audience` (required with `permission`: 400 invalid_request "You must provide the
//    audience"; a client other than the resource server: 400 invalid_request), `permission`
//    repeatable as `<resource>#<scope>[, <scope>...]`, `<resource>` or `#<scope>` (resource by
//    name or id; unknown: 400 invalid_resource "Resource with id [x] does not exist."; a scope
//    the resource lacks: 400 invalid_scope "One of the given scopes [x] is invalid"),
//    `permission_resource_format=uri` (+ `permission_resource_matching_uri=true`), `ticket`
//    (a permission ticket from the permission endpoint; bad or expired: 400 invalid_grant
//    "Invalid ticket"), `rpt` (a previous RPT: its permissions join the new one, `upgraded`),
//    `claim_token` + `claim_token_format` (accepted, decoded into the log, not evaluated),
//    `response_include_resource_name` (default true), `response_mode`;
//  - no permission and no ticket: every resource of the resource server is asked for;
//  - the decision, as Keycloak's isGranted: granted when AT LEAST ONE requested permission is
//    granted (a partial grant carries only the granted scopes), except with `rpt`, where every
//    requested one must be; nothing granted: 403 {"error":"access_denied",
//    "error_description":"not_authorized"};
//  - response_mode=decision: {"result": true}; response_mode=permissions: [{"rsid", "rsname",
//    "scopes"}]; default: {"upgraded", "access_token": <RPT>, "token_type": "Bearer",
//    "expires_in", "refresh_expires_in": 0, "not-before-policy": 0}. The RPT is a JWT signed
//    with this server's RSA key (RS256, its kid in the JWKS): iss, sub, aud = the resource
//    server, azp = the client, typ "Bearer", iat, exp (ttl.AccessToken), jti, the user's
//    realm_access/resource_access, and authorization.permissions [{"rsid", "rsname", "scopes"}];
//  - the Protection API under <issuer>/authz/protection, with a PAT (an access token of the
//    resource server client from client_credentials; none or invalid: 401, another client's:
//    403 insufficient_scope): GET resource_set -> [ids] (filters: name, exactName=true, type,
//    uri, matchingUri=true, deep=true -> representations, first, max), GET resource_set/<id> ->
//    {"_id", "name", "type", "uris", "resource_scopes": [{"id", "name"}], "scopes" (the same),
//    "owner": {"id": <resource server>}, "ownerManagedAccess": false} (unknown: 404
//    {"error":"not_found", ...}), POST permission with [{"resource_id", "resource_scopes",
//    "claims"?}] (or one object) -> 201 {"ticket"} (a JWS like the RPT, with permissions
//    [{"rsid", "scopes"}], valid 5 minutes; unknown resource: 400 invalid_resource_id);
//  - GET <issuer>/.well-known/uma2-configuration: issuer, the OIDC endpoints, grant types
//    (uma-ticket among them), resource_registration_endpoint, permission_endpoint,
//    policy_endpoint.
//  - matchingUri and permission_resource_matching_uri pick one resource as Keycloak's
//    PathMatcher does: exact URI, then {name} templates, then /*.ext suffixes, then the longest
//    trailing /*.
//
// Not reproduced: policies (the grants list IS the policy outcome), decision strategies,
// resource owners and user-managed sharing (owner is always the resource server), the
// submit_request / pending requests flow, response_permissions_limit, refresh tokens for RPTs,
// the UMA policy API (policy_endpoint is published, not served), creating / updating /
// deleting resources (POST/PUT/DELETE resource_set), claim evaluation.
//
// Logged (JSON lines on stderr, like the other stand-ins):
//   {"event": "uma.grant", "via": "bearer" | "client", "client_id", "sub", "audience",
//    "response_mode", "permissions": [asked], "ticket": bool, "claims": {...} | undefined,
//    "outcome": "granted" | "denied" | "refused", "granted": [...], "error"}
//   {"event": "uma.protection", "action": "resource_set.list" | "resource_set.get" |
//    "permission" | "unauthorized", "client_id", "status", "uri", "matching_uri", "count", "id"}
//   {"event": "uma.configuration"}
import * as crypto from 'node:crypto';
import * as querystring from 'node:querystring';

export const UMA_GRANT = 'urn:ietf:params:oauth:grant-type:uma-ticket';
const TICKET_TTL = 300;
const BODY_LIMIT = 64 * 1024;

class Refused extends Error {
  constructor(status, error, description) {
    super(description);
    this.status = status;
    this.error = error;
    this.error_description = description;
  }
}
const refuse = (status, error, description) => new Refused(status, error, description);

// Keycloak's PathMatcher precedence, on normalised paths (see the header).
function uriMatch(pattern, path) {
  const own = pattern.split('/').filter(Boolean);
  const got = path.split('/').filter(Boolean);
  if (pattern === path) return { rank: 0, length: own.length };
  const wildcard = pattern.endsWith('/*');
  const suffix = !wildcard && pattern.includes('/*.') ? pattern.slice(pattern.lastIndexOf('/*.') + 2) : null;
  if (suffix) {
    const dir = own.slice(0, -1);
    const inside = dir.every((part, i) => part === got[i]) && got.length > dir.length;
    return inside && path.endsWith(suffix) ? { rank: 2, length: own.length } : null;
  }
  const body = wildcard ? own.slice(0, -1) : own;
  if (got.length < body.length || (!wildcard && got.length !== body.length)) return null;
  let params = 0;
  for (let i = 0; i < body.length; i += 1) {
    if (/^\{[^{}]+\}$/.test(body[i])) params += 1;
    else if (body[i] !== got[i]) return null;
  }
  if (wildcard) return { rank: got.length === body.length && !params ? 0 : 3, length: own.length };
  return { rank: params ? 1 : 0, length: own.length, params };
}
function bestByUri(resources, path) {
  let best = null;
  for (const resource of resources) {
    for (const uri of resource.uris) {
      const found = uriMatch(uri, path);
      if (!found) continue;
      const key = [found.rank, found.rank === 1 ? found.params : found.rank === 3 ? -found.length : 0];
      if (!best || key[0] < best.key[0] || (key[0] === best.key[0] && key[1] < best.key[1])) best = { key, resource };
    }
  }
  return best?.resource ?? null;
}

export function authorizationStandIn({ config, issuer, log, jwks, subjectClaims, accountClaims }) {
  const settings = config.authorization;
  const resourceServer = settings.resource_server ?? config.clients?.[0]?.client_id;
  const resources = (settings.resources ?? []).map((item, index) => ({
    _id: item.id ?? `res-${index + 1}`,
    name: item.name,
    type: item.type,
    uris: item.uris ?? [],
    scopes: item.scopes ?? [],
  }));
  const signingKey = jwks.keys.find((key) => key.kty === 'RSA');
  const kid = crypto.hash('sha256', JSON.stringify({ e: signingKey.e, kty: 'RSA', n: signingKey.n }), 'base64url');
  const privateKey = crypto.createPrivateKey({ key: signingKey, format: 'jwk' });
  const publicKey = crypto.createPublicKey({ key: signingKey, format: 'jwk' });
  const accessTtl = config.ttl?.AccessToken ?? 3600;

  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  function sign(claims, typ = 'JWT') {
    const input = `${b64({ alg: 'RS256', typ, kid })}.${b64(claims)}`;
    return `${input}.${crypto.sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
  }
  // A JWS this stand-in signed (ticket, RPT), valid now: its claims, else null.
  function ownJws(token) {
    const parts = typeof token === 'string' ? token.split('.') : [];
    if (parts.length !== 3) return null;
    const ok = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), publicKey, Buffer.from(parts[2], 'base64url'));
    if (!ok) return null;
    try {
      const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
      return claims.iss === issuer && claims.exp > Date.now() / 1000 ? claims : null;
    } catch { return null; }
  }

  const byNameOrId = (ref) => resources.find((r) => r._id === ref) ?? resources.find((r) => r.name === ref);
  const representation = (r) => {
    const scopes = r.scopes.map((name) => ({ id: `${r._id}:${name}`, name }));
    return {
      _id: r._id, name: r.name, type: r.type, uris: r.uris, resource_scopes: scopes, scopes,
      owner: { id: resourceServer }, ownerManagedAccess: false,
    };
  };

  // What a user (by sub / login) is granted: resource id -> Set of scopes ('*': all of them).
  function grantsOf(login) {
    const granted = new Map();
    for (const entry of settings.grants?.[login] ?? []) {
      const [ref, scope] = entry.split('#');
      const resource = byNameOrId(ref);
      if (!resource) continue;
      const scopes = granted.get(resource._id) ?? new Set();
      if (scope) scopes.add(scope); else for (const name of resource.scopes) scopes.add(name);
      if (!resource.scopes.length && !scope) scopes.add('*');
      granted.set(resource._id, scopes);
    }
    return granted;
  }

  // The requested permissions: [{ resource, scopes: [...] }] (scopes empty: all of the resource).
  function requested(params) {
    const asked = [params.permission ?? []].flat().filter((p) => p !== '');
    const byUri = params.permission_resource_format === 'uri';
    const matching = params.permission_resource_matching_uri === 'true';
    const out = [];
    for (const permission of asked) {
      const hash = permission.indexOf('#');
      const ref = (hash === -1 ? permission : permission.slice(0, hash)).trim();
      const scopes = hash === -1 ? [] : permission.slice(hash + 1).split(',').map((s) => s.trim()).filter(Boolean);
      let targets;
      if (!ref) {
        targets = resources.filter((r) => scopes.some((s) => r.scopes.includes(s)));
      } else if (byUri) {
        const found = matching ? bestByUri(resources, ref) : resources.find((r) => r.uris.includes(ref));
        targets = found ? [found] : [];
      } else {
        targets = [byNameOrId(ref)].filter(Boolean);
      }
      if (!targets.length) throw refuse(400, 'invalid_resource', `Resource with id [${ref}] does not exist.`);
      for (const resource of targets) {
        const bad = ref ? scopes.find((s) => !resource.scopes.includes(s)) : undefined;
        if (bad) throw refuse(400, 'invalid_scope', `One of the given scopes [${bad}] is invalid`);
        out.push({ resource, scopes: ref ? scopes : scopes.filter((s) => resource.scopes.includes(s)) });
      }
    }
    return out;
  }

  function evaluate(login, asked) {
    const grants = grantsOf(login);
    const result = [];
    for (const { resource, scopes } of asked) {
      const have = grants.get(resource._id);
      if (!have) continue;
      const wanted = scopes.length ? scopes : resource.scopes;
      const given = have.has('*') ? wanted : wanted.filter((s) => have.has(s));
      if (!given.length && (resource.scopes.length || !have.has('*'))) continue;
      const existing = result.find((p) => p.rsid === resource._id);
      if (existing) existing.scopes = [...new Set([...existing.scopes, ...given])];
      else result.push({ rsid: resource._id, rsname: resource.name, scopes: given });
    }
    return result;
  }

  // The UMA grant itself: { status, body } for a subject (claims of its token) and a client.
  function umaGrant(subject, clientId, params) {
    const audience = params.audience;
    let asked;
    if (params.ticket) {
      const ticket = ownJws(params.ticket);
      if (!ticket || ticket.typ !== 'uma-ticket') throw refuse(400, 'invalid_grant', 'Invalid ticket');
      asked = ticket.permissions.map((p) => ({ resource: byNameOrId(p.rsid), scopes: p.scopes ?? [] })).filter((p) => p.resource);
    } else {
      if (params.permission && !audience) throw refuse(400, 'invalid_request', 'You must provide the audience');
      asked = params.permission ? requested(params) : resources.map((resource) => ({ resource, scopes: [] }));
    }
    if (audience && audience !== resourceServer) throw refuse(400, 'invalid_request', `Client does not support permissions [${audience}]`);
    const login = subject.sub;
    let granted = evaluate(login, asked);
    let upgraded = false;
    if (params.rpt) {
      const previous = ownJws(params.rpt);
      if (!previous || previous.sub !== login) throw refuse(400, 'invalid_request', 'Invalid RPT');
      const askedIds = asked.map(({ resource, scopes }) => ({ rsid: resource._id, scopes }));
      const covered = askedIds.every(({ rsid, scopes }) => granted.some((p) => p.rsid === rsid && scopes.every((s) => p.scopes.includes(s))));
      if (askedIds.length && !covered) throw refuse(403, 'access_denied', 'not_authorized');
      for (const permission of previous.authorization?.permissions ?? []) {
        const existing = granted.find((p) => p.rsid === permission.rsid);
        if (existing) existing.scopes = [...new Set([...existing.scopes, ...permission.scopes])];
        else granted = [...granted, permission];
      }
      upgraded = true;
    }
    if (!granted.length) throw refuse(403, 'access_denied', 'not_authorized');
    const withNames = params.response_include_resource_name !== 'false';
    const shown = granted.map(({ rsid, rsname, scopes }) => (withNames ? { rsid, rsname, scopes } : { rsid, scopes }));
    if (params.response_mode === 'decision') return { granted, body: { result: true } };
    if (params.response_mode === 'permissions') return { granted, body: shown };
    const now = Math.floor(Date.now() / 1000);
    const { realm_access: realmAccess, resource_access: resourceAccess } = subject.serviceAccount ? {} : accountClaims(login);
    const rpt = sign({
      iss: issuer, sub: login, aud: resourceServer, azp: clientId, typ: 'Bearer', iat: now, exp: now + accessTtl,
      jti: crypto.randomUUID(), scope: subject.scope, realm_access: realmAccess, resource_access: resourceAccess,
      authorization: { permissions: shown },
    });
    return {
      granted,
      body: {
        upgraded, access_token: rpt, token_type: 'Bearer', expires_in: accessTtl, refresh_expires_in: 0, 'not-before-policy': 0,
      },
    };
  }

  function claimsOf(params) {
    if (!params.claim_token) return undefined;
    try {
      return JSON.parse(Buffer.from(params.claim_token, 'base64url').toString('utf8'));
    } catch {
      return { undecodable: true };
    }
  }

  function grantAndLog(via, subject, clientId, params) {
    const entry = {
      event: 'uma.grant', via, client_id: clientId, sub: subject?.sub, audience: params.audience,
      response_mode: params.response_mode, permissions: [params.permission ?? []].flat(),
      ticket: !!params.ticket, claims: claimsOf(params),
    };
    try {
      const result = umaGrant(subject, clientId, params);
      log({ ...entry, outcome: 'granted', granted: result.granted.map((p) => `${p.rsname}#${p.scopes.join(',')}`) });
      return { status: 200, body: result.body };
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
      log({ ...entry, outcome: err.status === 403 ? 'denied' : 'refused', error: err.error, error_description: err.error_description });
      return { status: err.status, body: { error: err.error, error_description: err.error_description } };
    }
  }

  // --- HTTP plumbing ------------------------------------------------------------------------------
  const send = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  const readBody = (req) => new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > BODY_LIMIT) { reject(refuse(413, 'invalid_request', 'body too large')); req.destroy(); return; }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
  const bearer = (req) => {
    const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    return match ? match[1] : null;
  };

  async function tokenWithBearer(req, res) {
    const params = querystring.parse(await readBody(req));
    if (params.grant_type !== UMA_GRANT) {
      send(res, 400, { error: 'invalid_client', error_description: 'a bearer token authenticates only the UMA grant' });
      return;
    }
    const subject = await subjectClaims(bearer(req));
    if (!subject) {
      log({ event: 'uma.grant', via: 'bearer', outcome: 'refused', error: 'invalid_grant' });
      send(res, 401, { error: 'invalid_grant', error_description: 'Invalid bearer token' });
      return;
    }
    const result = grantAndLog('bearer', subject, subject.azp ?? subject.client_id, params);
    send(res, result.status, result.body);
  }

  async function pat(req) {
    const claims = await subjectClaims(bearer(req) ?? '');
    if (!claims) return { status: 401 };
    const client = claims.client_id ?? claims.azp;
    if (client !== resourceServer || !claims.serviceAccount) return { status: 403, client };
    return { status: 200, client };
  }

  function listResources(url) {
    const q = url.searchParams;
    let found = resources;
    if (q.get('name')) {
      const name = q.get('name');
      found = found.filter((r) => (q.get('exactName') === 'true' ? r.name === name : r.name.toLowerCase().includes(name.toLowerCase())));
    }
    if (q.get('type')) found = found.filter((r) => r.type === q.get('type'));
    if (q.get('uri')) {
      const uri = q.get('uri');
      const exact = found.filter((r) => r.uris.includes(uri));
      found = exact.length || q.get('matchingUri') !== 'true' ? exact : [bestByUri(found, uri)].filter(Boolean);
    }
    const first = Number(q.get('first') ?? 0);
    const max = Number(q.get('max') ?? -1);
    found = found.slice(first, max >= 0 ? first + max : undefined);
    return q.get('deep') === 'true' ? found.map(representation) : found.map((r) => r._id);
  }

  async function protection(req, res, path) {
    const url = new URL(req.url, 'http://stand-in');
    const who = await pat(req);
    if (who.status !== 200) {
      log({ event: 'uma.protection', action: 'unauthorized', path, client_id: who.client, status: who.status });
      send(res, who.status, who.status === 401
        ? { error: 'invalid_token', error_description: 'a PAT (the resource server\'s client_credentials access token) is required' }
        : { error: 'insufficient_scope', error_description: 'Requires uma_protection scope.' });
      return;
    }
    if (req.method === 'GET' && path === '/resource_set') {
      const body = listResources(url);
      log({
        event: 'uma.protection', action: 'resource_set.list', client_id: who.client, status: 200,
        uri: url.searchParams.get('uri') ?? undefined, matching_uri: url.searchParams.get('matchingUri') === 'true', count: body.length,
      });
      send(res, 200, body);
      return;
    }
    const one = /^\/resource_set\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && one) {
      const id = decodeURIComponent(one[1]);
      const resource = resources.find((r) => r._id === id);
      log({ event: 'uma.protection', action: 'resource_set.get', client_id: who.client, status: resource ? 200 : 404, id });
      send(res, resource ? 200 : 404, resource ? representation(resource) : { error: 'not_found', error_description: `Resource set with id [${id}] does not exist` });
      return;
    }
    if (req.method === 'POST' && path === '/permission') {
      let asked;
      try { asked = JSON.parse(await readBody(req)); } catch { asked = null; }
      asked = Array.isArray(asked) ? asked : [asked];
      for (const item of asked) {
        const resource = item && resources.find((r) => r._id === item.resource_id);
        const bad = resource && (item.resource_scopes ?? []).find((s) => !resource.scopes.includes(s));
        if (!resource || bad) {
          const status = 400;
          log({ event: 'uma.protection', action: 'permission', client_id: who.client, status });
          send(res, status, resource
            ? { error: 'invalid_scope', error_description: `Invalid scope [${bad}]` }
            : { error: 'invalid_resource_id', error_description: `Resource set with id [${item?.resource_id}] does not exists in this server.` });
          return;
        }
      }
      const now = Math.floor(Date.now() / 1000);
      const ticket = sign({
        typ: 'uma-ticket', iss: issuer, aud: resourceServer, azp: who.client, iat: now, exp: now + TICKET_TTL, jti: crypto.randomUUID(),
        permissions: asked.map((item) => ({ rsid: item.resource_id, scopes: item.resource_scopes ?? [] })),
      });
      log({ event: 'uma.protection', action: 'permission', client_id: who.client, status: 201, count: asked.length });
      send(res, 201, { ticket });
      return;
    }
    log({ event: 'uma.protection', action: 'unsupported', client_id: who.client, status: 405, path, method: req.method });
    send(res, 405, { error: 'unsupported', error_description: 'not reproduced by this stand-in' });
  }

  function umaConfiguration(res) {
    log({ event: 'uma.configuration' });
    send(res, 200, {
      issuer,
      authorization_endpoint: `${issuer}/auth`,
      token_endpoint: `${issuer}/token`,
      introspection_endpoint: `${issuer}/token/introspection`,
      end_session_endpoint: `${issuer}/session/end`,
      jwks_uri: `${issuer}/jwks`,
      grant_types_supported: ['authorization_code', 'client_credentials', 'refresh_token', UMA_GRANT],
      response_types_supported: ['code'],
      response_modes_supported: ['query', 'fragment', 'form_post'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt'],
      scopes_supported: ['openid', 'profile', 'email'],
      resource_registration_endpoint: `${issuer}/authz/protection/resource_set`,
      permission_endpoint: `${issuer}/authz/protection/permission`,
      policy_endpoint: `${issuer}/authz/protection/uma-policy`,
    });
  }

  return {
    // route(req, res) with req.url relative to the issuer's path: true when handled here.
    route(req, res) {
      const path = req.url.split('?')[0];
      const fail = (err) => {
        if (err instanceof Refused) send(res, err.status, { error: err.error, error_description: err.error_description });
        else { log({ event: 'uma.error', message: err.message }); send(res, 500, { error: 'server_error' }); }
      };
      if (req.method === 'GET' && path === '/.well-known/uma2-configuration') {
        umaConfiguration(res);
        return true;
      }
      if (path.startsWith('/authz/protection/')) {
        protection(req, res, path.slice('/authz/protection'.length)).catch(fail);
        return true;
      }
      if (req.method === 'POST' && path === '/token' && bearer(req)) {
        tokenWithBearer(req, res).catch(fail);
        return true;
      }
      return false;
    },
    // The registered grant type (client authentication done by oidc-provider).
    async grant(ctx) {
      const { client, params } = ctx.oidc;
      let subject;
      if (params.subject_token) {
        subject = await subjectClaims(params.subject_token);
        if (!subject) {
          log({ event: 'uma.grant', via: 'client', client_id: client.clientId, outcome: 'refused', error: 'invalid_grant' });
          ctx.status = 400;
          ctx.body = { error: 'invalid_grant', error_description: 'Invalid subject_token' };
          return;
        }
      } else {
        subject = { sub: `service-account-${client.clientId}`, serviceAccount: true };
      }
      const result = grantAndLog('client', subject, client.clientId, params);
      ctx.status = result.status;
      ctx.body = result.body;
      ctx.set('Cache-Control', 'no-store');
    },
    parameters: [
      'audience', 'permission', 'ticket', 'rpt', 'claim_token', 'claim_token_format', 'response_mode',
      'response_include_resource_name', 'permission_resource_format', 'permission_resource_matching_uri',
      'subject_token', 'submit_request', 'response_permissions_limit',
    ],
    duplicates: ['permission'],
  };
}
