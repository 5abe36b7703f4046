// Client helpers for the SDK tests: clients that are closed after each test,
// event recorders, and the transports every relay test runs over.
import { TickrelayClient, type ClientOptions, type Delivery, type Frame } from "../../src/node.js";
import { SplitProxy } from "./splitproxy.js";
import { eventually, type Relay } from "./relay.js";

const open = new Set<TickrelayClient>();

/** A client that closeClients() closes. */
export function newClient(options: ClientOptions): TickrelayClient {
  const c = new TickrelayClient(options);
  open.add(c);
  return c;
}

export async function closeClients(): Promise<void> {
  await Promise.all([...open].map((c) => c.close()));
  open.clear();
}

/** Records a client's frames and deliveries. */
export class Recorder {
  readonly frames: Frame[] = [];
  readonly deliveries: Delivery[] = [];
  constructor(client: TickrelayClient) {
    client.on("frame", (f) => {
      this.frames.push(f);
      this.deliveries.push(...f.deliveries);
    });
  }
  texts(kind?: number): string[] {
    return this.deliveries.filter((d) => kind === undefined || d.kind === kind).map((d) => text(d.payload));
  }
  async waitFor(n: number, what = `${n} deliveries`, timeoutMs = 10_000): Promise<void> {
    await eventually(() => this.deliveries.length >= n, timeoutMs, what);
  }
}

export function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

/** How a test's clients reach the relay: directly, or through a proxy that splits every write. */
export interface Transport {
  readonly name: string;
  url(relay: Relay): Promise<string>;
}

const proxies: SplitProxy[] = [];

export const transports: Transport[] = [
  { name: "direct", url: async (r) => r.url },
  {
    name: "split writes",
    url: async (r) => {
      const p = await SplitProxy.start({ target: r.addr });
      proxies.push(p);
      return `ws://${p.addr}/ws`;
    },
  },
];

export async function closeProxies(): Promise<void> {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
}

/** A room id unique to one test. */
let roomSeq = 0;
export function roomName(prefix = "room"): string {
  return `${prefix}-${process.pid}-${++roomSeq}`;
}
