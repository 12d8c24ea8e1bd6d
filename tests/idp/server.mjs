// A real OpenID provider for bearer-guard's integration tests: oidc-provider issuing RFC 9068
// `at+jwt` access tokens by client_credentials, on a free loopback port (printed as
// "listening <port>" on stdout). POST /rotate switches to a new signing key (new kid), as an
// IdP's key rotation does. Test-only: fixed client secret, keys in memory.
//
// It also issues OPAQUE access tokens (resources https://opaque.example, 300 s, and
// https://opaque-short.example, 3 s) that a resource server introspects (RFC 7662,
// POST /token/introspection) and revokes (RFC 7009, POST /token/revocation), authenticating as
// client `proxy` / `proxy-secret` (HTTP Basic or client_secret_post: oidc-provider accepts
// either for a client registered with one of them). Opaque tokens live in oidc-provider's
// in-memory adapter, which is process-wide, so they outlive POST /rotate. GET /health -> 200.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const resources = {
  'https://orders.example': { ttl: 300 },
  'https://billing.example': { ttl: 300 },
  'https://short.example': { ttl: 1 },
  'https://opaque.example': { ttl: 300, format: 'opaque' },
  'https://opaque-short.example': { ttl: 3, format: 'opaque' },
};

// The resource server (the proxy) may introspect and revoke tokens of these clients.
const PROXY = 'proxy';
const proxied = new Set(['orders-client']);
const proxyMayHandle = (client, token) =>
  client.clientId === PROXY && proxied.has(token.clientId);

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
}

function makeProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    jwks: { keys },
    clients: [{
      client_id: 'orders-client',
      client_secret: 'test-only-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    }, {
      // The resource server: it only introspects and revokes, it gets no tokens itself.
      client_id: PROXY,
      client_secret: 'proxy-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    }],
    scopes: ['orders:read', 'orders:write'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // The proxy, for tokens of the clients it serves; a client, for its own tokens.
        allowedPolicy: async (ctx, client, token) =>
          proxyMayHandle(client, token) || client.clientId === token.clientId,
      },
      revocation: {
        enabled: true,
        // Same rule; anyone else gets the RFC 7009 200 with the token left alone.
        allowedPolicy: async (ctx, client, token) =>
          proxyMayHandle(client, token) || client.clientId === token.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'https://orders.example',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          const resource = resources[indicator];
          if (!resource) throw new Error(`unknown resource ${indicator}`);
          if (resource.format === 'opaque') {
            return {
              scope: 'orders:read orders:write',
              audience: indicator,
              accessTokenFormat: 'opaque',
              accessTokenTTL: resource.ttl,
            };
          }
          return {
            scope: 'orders:read orders:write',
            audience: indicator,
            accessTokenFormat: 'jwt',
            accessTokenTTL: resource.ttl,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  return provider.callback();
}

let keys = [signingKey()];
let handler;
const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/rotate') {
    // The new key signs; the old one is gone from the JWKS.
    keys = [signingKey()];
    handler = makeProvider(issuer, keys);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: keys[0].kid }));
    return;
  }
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ok"}');
    return;
  }
  handler(req, res);
});
let issuer;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  handler = makeProvider(issuer, keys);
  process.stdout.write(`listening ${port}\n`);
});
