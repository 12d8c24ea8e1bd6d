// A real OpenID provider for bearer-guard's integration tests: oidc-provider issuing RFC 9068
// `at+jwt` access tokens by client_credentials, on a free loopback port (printed as
// "listening <port>" on stdout). POST /rotate switches to a new signing key (new kid), as an
// IdP's key rotation does. Test-only: fixed client secret, keys in memory.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const resources = {
  'https://orders.example': { ttl: 300 },
  'https://billing.example': { ttl: 300 },
  'https://short.example': { ttl: 1 },
};

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
    }],
    scopes: ['orders:read', 'orders:write'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'https://orders.example',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          const resource = resources[indicator];
          if (!resource) throw new Error(`unknown resource ${indicator}`);
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
  handler(req, res);
});
let issuer;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  handler = makeProvider(issuer, keys);
  process.stdout.write(`listening ${port}\n`);
});
