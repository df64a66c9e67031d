import type { Agent } from 'node:http';
import type { HttpService } from '../http/exchange.js';
import { MESH, header } from '../http/headers.js';
import { forwardH1 } from '../http/h1-forward.js';
import { forwardH2 } from '../http/h2-forward.js';
import { upgradeH1 } from '../http/h1-upgrade.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { PeerPool } from '../outbound/peer-pool.js';

/**
 * Terminal inbound service: plaintext to the app on its port, in the protocol the
 * original client spoke (`wren-orig-proto`: requests upgraded to HTTP/2 between the
 * sidecars are downgraded back to HTTP/1.1 here).
 */
export function deliverToApp(appAddress: string, appSessions: PeerPool, agent: Agent): HttpService {
  return (req) => {
    const port = req.targetPort;
    if (port === undefined) return Promise.reject(new ProxyError('BAD_REQUEST', 'no target port'));
    const orig = header(req.headers, MESH.origProto);
    delete req.headers[MESH.origProto];
    delete req.headers[MESH.targetPort];
    delete req.headers[MESH.healthCheck];
    // An upgrade reaches the app as an HTTP/1.1 head rebuilt from the filtered headers.
    if (req.upgrade !== undefined) return upgradeH1(appAddress, port, req, req.headers);
    if (orig === 'HTTP/1.1') return forwardH1(agent, appAddress, port, req, req.headers);
    return appSessions
      .get({ address: appAddress, port, proxyPort: null, identity: '', weight: 1, zone: '', ready: true })
      .then((s) => forwardH2(s, req, req.headers));
  };
}
