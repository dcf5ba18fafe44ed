/**
 * A TCP proxy on a free loopback port that simulates network trouble between a client (the daemon) and a server
 * (PostgreSQL, Dovecot, an SMTP server):
 * - reset(): every connection gets a TCP RST on both sides; new ones are reset at once, until heal();
 * - blackhole(): nothing goes through in either direction and nothing is closed; new connections are accepted and
 *   then hang. What either side sends (bytes, a FIN) is held, not dropped;
 * - stripStarttls(): a relay that removes STARTTLS from an SMTP server's EHLO answer (a downgrade), on every
 *   connection made from now on; the open ones are reset so that clients connect again through it;
 * - heal(): forwarding again, held bytes first, as TCP retransmission would deliver them after a short partition.
 *   A connection one side closed during the blackhole is reset on the other side; new connections work (unstripped).
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
  stripStarttls(): void;
  heal(): void;
  /** Client connections open through the proxy (forwarding or held in a blackhole). */
  connections(): number;
  /** Client connections accepted since the proxy started. */
  accepted(): number;
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

/** Splits a stream into CRLF lines, whatever its chunks; `each` maps one line (without CRLF) to what goes on. */
function lineFilter(each: (line: string) => string[]): (chunk: Buffer) => Buffer {
  let partial = '';
  return (chunk) => {
    const lines = (partial + chunk.toString('latin1')).split('\r\n');
    partial = lines.pop()!;
    return Buffer.from(
      lines
        .flatMap(each)
        .map((l) => `${l}\r\n`)
        .join(''),
      'latin1',
    );
  };
}

/**
 * What a STARTTLS-stripping middlebox does to an SMTP session: the `STARTTLS` line of the server's EHLO answer is
 * dropped (the line before a dropped last line becomes the last one), and a client that sends STARTTLS anyway has
 * the command overwritten, so the server refuses it as unknown.
 */
export function starttlsStripper(): { fromServer: (chunk: Buffer) => Buffer; fromClient: (chunk: Buffer) => Buffer } {
  let held: string | null = null; // a `250-` line, until the next line says whether it is the last one
  const fromServer = lineFilter((line) => {
    const out: string[] = [];
    const starttls = /^250[ -]STARTTLS$/i.test(line);
    if (line.startsWith('250-')) {
      if (starttls) return out;
      if (held !== null) out.push(held);
      held = line;
      return out;
    }
    if (held !== null) out.push(starttls && line.startsWith('250 ') ? `250 ${held.slice(4)}` : held);
    held = null;
    if (!starttls) out.push(line);
    return out;
  });
  const fromClient = lineFilter((line) => [/^STARTTLS$/i.test(line) ? 'XXXXXXXX' : line]);
  return { fromServer, fromClient };
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: ProxyMode = 'forward';
  let strip = false;
  const pairs = new Set<Pair>();

  // An RST is impossible on a socket this side already half-closed (libuv refuses to reset after a shutdown, and Node
  // then never closes the handle: the test process spins at exit) and pointless on one still connecting: those are
  // just closed.
  const rst = (s: net.Socket | null) => {
    if (!s || s.destroyed) return;
    if (s.connecting || s.writableEnded) s.destroy();
    else s.resetAndDestroy();
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
  const pipe = (p: Pair, from: net.Socket, to: net.Socket, filter?: (chunk: Buffer) => Buffer) => {
    const link: Link = { to, held: [], eof: false };
    p.links.push(link);
    from.on('data', (raw: Buffer) => {
      const chunk = filter ? filter(raw) : raw;
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
    const stripper = strip ? starttlsStripper() : null;
    pipe(p, p.client, up, stripper?.fromClient);
    pipe(p, up, p.client, stripper?.fromServer);
    p.client.resume();
  };

  let accepted = 0;
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    accepted++;
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
    accepted: () => accepted,
    reset() {
      mode = 'reset';
      for (const p of [...pairs]) drop(p);
    },
    blackhole() {
      mode = 'blackhole';
    },
    stripStarttls() {
      strip = true;
      for (const p of [...pairs]) drop(p);
    },
    heal() {
      mode = 'forward';
      strip = false;
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
