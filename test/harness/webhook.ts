/**
 * A local webhook receiver for inbound-sink tests: `answer` decides each request's HTTP status from its JSON body;
 * every request (headers, exact raw body, parsed body, status answered) is kept in `received`. `stop()` and
 * `start(samePort)` simulate an outage (connection refused in between).
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  headers: IncomingHttpHeaders;
  raw: string;
  body: Record<string, any>;
  status: number;
}

/** A webhook receiver: `answer` decides the status of each request; everything received is kept. */
export class WebhookReceiver {
  received: ReceivedRequest[] = [];
  answer: (body: Record<string, any>) => number = () => 200;
  server: Server | null = null;
  port = 0;
  async start(port = 0): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const body = JSON.parse(raw) as Record<string, any>;
        const status = this.answer(body);
        this.received.push({ headers: req.headers, raw, body, status });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }
  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = null;
  }
  of(id: string): ReceivedRequest[] {
    return this.received.filter((r) => r.body.messageId === id);
  }
}
