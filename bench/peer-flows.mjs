// The peer (Node oidc-provider) set up for the two single-use benchmark cases, which the
// shared peer configuration (../shared/peers/oidc-provider/server.js) cannot serve because its
// only client is a client-credentials one:
//
//   code     authorization_code + PKCE (S256) exchange by a public client, every request
//            redeeming a different pre-minted code;
//   refresh  refresh_token grant by the same client, every request a different pre-minted
//            refresh token.
//
//   PEER_DIR=../shared/peers/oidc-provider PEER_MINT=N PEER_MINT_DIR=DIR node bench/peer-flows.mjs PORT
//
// It runs the shared peer's installed oidc-provider (PEER_DIR/node_modules, put there by the
// shared `start` script's `npm ci`) rather than installing its own, with the shared server.js
// settings where they apply: fresh Ed25519, P-256 and RSA keys on every start; access tokens
// for resource https://api.example.test/jwt are JWTs (RFC 9068) signed with ALG (env, default
// EdDSA), 300 s; scopes tools:read tools:call files:read, plus offline_access so that a code
// exchange also returns a refresh token. Its one client, `agent-code`, is public
// (token_endpoint_auth_method none), allowed authorization_code and refresh_token, with one
// loopback redirect URI; oidc-provider requires PKCE for public clients and rotates their
// refresh tokens (its defaults, as Mandate does). No credential carries the openid scope, so no
// ID token is signed (Mandate issues none in these cases either). No interactions: there is
// no login page, every credential is minted before the server listens.
//
// Minting (PEER_MINT=N, PEER_MINT_DIR=DIR): N grants (account, client, the resource's scopes
// and offline_access), each with one authorization code (S256 challenge of a random verifier,
// valid 600 s) and one refresh token, made through the provider's own models and stored as
// its token endpoint would store them. Written for bench/run.sh, files mode 0600:
//   DIR/codes           code<TAB>verifier<TAB>redirect_uri, one per line
//   DIR/refresh-tokens  one refresh token per line
// the same formats `mandate bulk-load` writes.
//
// Storage: oidc-provider's built-in memory adapter is an LRU of about 1000 entries, which
// would evict all but the last pre-minted credentials, so this script supplies its own: plain
// in-memory Maps, unbounded, expiry never enforced by the store (the provider still checks
// every credential's exp itself). Benchmark-only, and it favours the peer: nothing is written
// anywhere, while Mandate writes every credential durably to SQLite or PostgreSQL and records
// an audit event for it.
//
// Loopback only; quiet (no line per request); SIGTERM or SIGINT stops it.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const peerDir = path.resolve(process.env.PEER_DIR || path.join(here, '..', '..', 'shared', 'peers', 'oidc-provider'));
const port = Number.parseInt(process.argv[2] || process.env.PORT || '', 10);
const host = '127.0.0.1';
const alg = process.env.ALG || 'EdDSA';
const mint = Number.parseInt(process.env.PEER_MINT || '0', 10);
const mintDir = process.env.PEER_MINT_DIR || '';

function fail(message) {
  console.error(`peer-flows: ${message}`);
  process.exit(1);
}

if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  fail('usage: node bench/peer-flows.mjs PORT (with PEER_DIR, PEER_MINT, PEER_MINT_DIR in the environment)');
}
if (!Number.isInteger(mint) || mint < 0) fail(`PEER_MINT must be a whole number, not "${process.env.PEER_MINT}"`);
if (mint > 0 && !mintDir) fail('PEER_MINT needs PEER_MINT_DIR (where to write the codes and refresh tokens)');

// --- the shared peer's oidc-provider -------------------------------------------------------

// The package's entry as its package.json declares it: exports (a string, or "." with import
// or default conditions), else main, else index.js.
function packageEntry(pkgDir) {
  const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  let entry = pkg.exports;
  if (entry && typeof entry === 'object' && '.' in entry) entry = entry['.'];
  while (entry && typeof entry === 'object') {
    entry = entry.import ?? entry.node ?? entry.default;
  }
  return path.join(pkgDir, typeof entry === 'string' ? entry : (pkg.main || 'index.js'));
}

const pkgDir = path.join(peerDir, 'node_modules', 'oidc-provider');
if (!fs.existsSync(path.join(pkgDir, 'package.json'))) {
  fail(`${pkgDir} is missing: install the shared peer's packages first `
    + `(run ${path.join(peerDir, 'start')} once, or npm ci in ${peerDir})`);
}
const { default: Provider } = await import(pathToFileURL(packageEntry(pkgDir)).href);

// --- storage: unbounded Maps ---------------------------------------------------------------

const GRANTABLE = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);
const models = new Map(); // model name -> Map(id -> payload)
const byGrant = new Map(); // grantId -> [[model Map, id], ...] (for revocation by grant)
const byUid = new Map(); // session uid -> session id
const byUserCode = new Map(); // device user code -> device code id

class MapAdapter {
  constructor(name) {
    this.name = name;
    if (!models.has(name)) models.set(name, new Map());
    this.items = models.get(name);
  }

  async upsert(id, payload) {
    if (!this.items.has(id) && payload.grantId && GRANTABLE.has(this.name)) {
      const members = byGrant.get(payload.grantId);
      if (members) members.push([this.items, id]);
      else byGrant.set(payload.grantId, [[this.items, id]]);
    }
    if (this.name === 'Session' && payload.uid) byUid.set(payload.uid, id);
    if (payload.userCode) byUserCode.set(payload.userCode, id);
    this.items.set(id, payload);
  }

  async find(id) {
    return this.items.get(id);
  }

  async findByUid(uid) {
    const id = byUid.get(uid);
    return id === undefined ? undefined : this.items.get(id);
  }

  async findByUserCode(userCode) {
    const id = byUserCode.get(userCode);
    return id === undefined ? undefined : this.items.get(id);
  }

  async consume(id) {
    const payload = this.items.get(id);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    const payload = this.items.get(id);
    this.items.delete(id);
    if (payload?.uid && byUid.get(payload.uid) === id) byUid.delete(payload.uid);
    if (payload?.userCode && byUserCode.get(payload.userCode) === id) byUserCode.delete(payload.userCode);
  }

  async revokeByGrantId(grantId) {
    const members = byGrant.get(grantId);
    byGrant.delete(grantId);
    for (const [items, id] of members ?? []) items.delete(id);
  }
}

// --- configuration -------------------------------------------------------------------------

function jwk(type, options, kid, jwsAlg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: jwsAlg, use: 'sig' };
}

const keys = [
  jwk('ed25519', undefined, 'ed1', 'EdDSA'),
  jwk('ec', { namedCurve: 'P-256' }, 'es1', 'ES256'),
  jwk('rsa', { modulusLength: 2048 }, 'rs1', 'RS256'),
];

export const CLIENT_ID = 'agent-code';
export const REDIRECT_URI = 'http://127.0.0.1/callback';
const SCOPE = 'tools:read tools:call files:read';
const GRANTED = `offline_access ${SCOPE}`;
const JWT_RS = 'https://api.example.test/jwt';
const CODE_TTL = 600; // seconds: outlives the code case (Mandate's codes: 60 s, used first)
const REFRESH_TTL = 14 * 24 * 60 * 60; // oidc-provider's default

const configuration = {
  adapter: MapAdapter,
  clients: [
    {
      client_id: CLIENT_ID,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
      scope: GRANTED,
    },
  ],
  scopes: ['openid', 'offline_access', ...SCOPE.split(' ')],
  jwks: { keys },
  // No account store: every minted credential names an account that simply exists.
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  ttl: {
    AuthorizationCode: CODE_TTL,
    RefreshToken: REFRESH_TTL,
    Grant: REFRESH_TTL,
  },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => JWT_RS,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resourceIndicator) => {
        if (resourceIndicator === JWT_RS) {
          return {
            scope: SCOPE,
            audience: JWT_RS,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        }
        throw new Error('unknown resource');
      },
    },
  },
};

const provider = new Provider(`http://${host}:${port}`, configuration);
provider.on('server_error', (_ctx, err) => {
  console.error('server_error', err);
});

let server;
function stop() {
  if (!server) process.exit(0);
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

// --- minting -------------------------------------------------------------------------------

// Mints `count` grants, each with one code and one refresh token, appending their lines to the
// two files. Batched: one write per file per batch, random verifiers drawn a batch at a time.
async function mintCredentials(count, dir) {
  fs.mkdirSync(dir, { recursive: true });
  const codesFd = fs.openSync(path.join(dir, 'codes'), 'w', 0o600);
  const refreshFd = fs.openSync(path.join(dir, 'refresh-tokens'), 'w', 0o600);
  const client = await provider.Client.find(CLIENT_ID);
  if (!client) fail(`client ${CLIENT_ID} not found in the provider`);
  const batch = 10000;
  const step = Math.max(batch, Math.ceil(count / 10 / batch) * batch);
  const started = process.hrtime.bigint();
  for (let done = 0; done < count;) {
    const n = Math.min(batch, count - done);
    const random = crypto.randomBytes(32 * n);
    const codeLines = new Array(n);
    const refreshLines = new Array(n);
    for (let i = 0; i < n; i += 1) {
      const accountId = `load-user-${(done + i) % 1000}`;
      const grant = new provider.Grant({ accountId, clientId: CLIENT_ID });
      grant.addOIDCScope('offline_access');
      grant.addResourceScope(JWT_RS, SCOPE);
      const grantId = await grant.save();

      const verifier = random.subarray(32 * i, 32 * (i + 1)).toString('base64url');
      const code = await new provider.AuthorizationCode({
        accountId,
        grantId,
        client,
        scope: GRANTED,
        resource: JWT_RS,
        redirectUri: REDIRECT_URI,
        codeChallenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
        codeChallengeMethod: 'S256',
        authTime: Math.floor(Date.now() / 1000),
      }).save();
      codeLines[i] = `${code}\t${verifier}\t${REDIRECT_URI}\n`;

      refreshLines[i] = `${await new provider.RefreshToken({
        accountId,
        grantId,
        client,
        scope: GRANTED,
        resource: JWT_RS,
        gty: 'authorization_code',
        rotations: 0,
        authTime: Math.floor(Date.now() / 1000),
      }).save()}\n`;
    }
    fs.writeSync(codesFd, codeLines.join(''));
    fs.writeSync(refreshFd, refreshLines.join(''));
    done += n;
    // Back to the event loop once a batch, so that SIGTERM or SIGINT is handled while minting.
    await new Promise(setImmediate);
    if (done % step === 0 || done === count) {
      console.log(`minted ${done}/${count} grants (a code and a refresh token each)`);
    }
  }
  fs.closeSync(codesFd);
  fs.closeSync(refreshFd);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`minted ${count} codes and ${count} refresh tokens in ${seconds.toFixed(1)} s`
    + ` (${Math.round(count / seconds)} grants/s); RSS ${(process.memoryUsage().rss / 1048576).toFixed(0)} MiB`);
}

if (mint > 0) {
  await mintCredentials(mint, mintDir);
}

server = provider.listen(port, host, () => {
  console.log(`oidc-provider (code and refresh flows, ${alg}) listening on http://${host}:${port} pid=${process.pid}`);
});
