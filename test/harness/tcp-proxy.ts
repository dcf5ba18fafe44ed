/**
 * A TCP proxy on a free loopback port that simulates network trouble between a client (the daemon) and a server
 * (PostgreSQL, Dovecot):
 * - reset(): every connection gets a TCP RST on both sides; new ones are reset at once, until heal();
 * - blackhole(): nothing goes through in either direction and nothing is closed; new connections are accepted and
 *   then hang. What either side sends (bytes, a FIN) is held, not dropped;
 * - heal(): forwarding again, held bytes first, as TCP retransmission would deliver them after a short partition.
 *   A connection one side closed during the blackhole is reset on the other side; new connections work.
 *
 * The kernel still ACKs at both ends of a blackhole, so TCP keepalive and tcp_user_timeout never fire: only the
 * client's own timeouts (and the server's, e.g. idle_session_timeout) can notice it.
 */
import net from 'node:net';

export type ProxyMode = 'forward' | 'blackhole' | 'reset';

export interface TcpProxy {
  host: string;
  port: number;
  mode(): ProxyMode;
  reset(): void;
  blackhole(): void;
  heal(): void;
  /** Client connections open through the proxy (forwarding or held in a blackhole). */
  connections(): number;
  close(): Promise<void>;
}

interface Link {
  to: net.Socket;
  held: Buffer[];
  eof: boolean;
}

interface Pair {
  client: net.Socket;
  /** null while a connection made during a blackhole waits for heal() */
  upstream: net.Socket | null;
  links: Link[];
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: ProxyMode = 'forward';
  const pairs = new Set<Pair>();

  const rst = (s: net.Socket | null) => {
    if (s && !s.destroyed) s.resetAndDestroy();
  };
  const drop = (p: Pair) => {
    pairs.delete(p);
    rst(p.client);
    rst(p.upstream);
  };
  const forget = (p: Pair) => {
    if (p.client.destroyed && (!p.upstream || p.upstream.destroyed)) pairs.delete(p);
  };

  /** Copy `from` → `to` (half-closes included); outside forward mode it is held in the link. */
  const pipe = (p: Pair, from: net.Socket, to: net.Socket) => {
    const link: Link = { to, held: [], eof: false };
    p.links.push(link);
    from.on('data', (chunk: Buffer) => {
      if (mode !== 'forward') return void link.held.push(chunk);
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => {
      if (mode !== 'forward') link.eof = true;
      else if (!to.destroyed) to.end();
    });
    from.on('close', (hadError) => {
      // an RST (or an error) goes on to the other side; during a blackhole nothing does
      if (hadError && mode === 'forward') drop(p);
      forget(p);
    });
  };

  const connectUpstream = (p: Pair) => {
    const up = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    up.on('error', () => {}); // seen as close(hadError)
    p.upstream = up;
    pipe(p, p.client, up);
    pipe(p, up, p.client);
    p.client.resume();
  };

  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    client.on('error', () => {}); // seen as close(hadError)
    if (mode === 'reset') return void client.resetAndDestroy();
    const p: Pair = { client, upstream: null, links: [] };
    pairs.add(p);
    // in a blackhole the client waits, unread, and its server connection is made at heal()
    if (mode === 'forward') connectUpstream(p);
    else client.once('close', () => forget(p));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;

  return {
    host: '127.0.0.1',
    port,
    mode: () => mode,
    reset() {
      mode = 'reset';
      for (const p of [...pairs]) drop(p);
    },
    blackhole() {
      mode = 'blackhole';
    },
    heal() {
      mode = 'forward';
      for (const p of [...pairs]) {
        if (!p.upstream) connectUpstream(p);
        else if (p.client.destroyed || p.upstream.destroyed) drop(p);
        else
          for (const link of p.links) {
            for (const chunk of link.held.splice(0)) link.to.write(chunk);
            if (link.eof) link.to.end();
          }
      }
    },
    connections: () => [...pairs].filter((p) => !p.client.destroyed).length,
    async close() {
      mode = 'reset';
      for (const p of [...pairs]) drop(p);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
