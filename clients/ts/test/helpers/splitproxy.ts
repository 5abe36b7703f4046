// A TCP proxy for tests that makes loopback behave like a real network:
// every write, both ways, is cut into pieces of random size, with short
// pauses after some of them, so a WebSocket message arrives in several reads
// split at arbitrary points (inside a header, a mask, a payload). The same
// idea as the Go tests' internal/splitproxy.
import net from "node:net";

export interface SplitProxyOptions {
  /** Where to forward: host:port. Changeable later with retarget(). */
  target: string;
  /** Seed of the cuts (logged), for replaying a failure. Default random. */
  seed?: number;
  /** The largest piece, bytes. Default 4096. */
  maxPiece?: number;
  /** The longest pause after a piece, ms. Default 2. */
  maxPauseMs?: number;
  /** The chance of a pause after a piece. Default 0.25. */
  pauseChance?: number;
}

/** mulberry32: a small seeded PRNG, enough to cut bytes reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class SplitProxy {
  readonly seed: number;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly frozen = new Set<net.Socket>();
  private target: string;
  private connIndex = 0;
  private readonly o: Required<Omit<SplitProxyOptions, "target" | "seed">>;

  private constructor(o: SplitProxyOptions) {
    this.seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
    this.target = o.target;
    this.o = { maxPiece: o.maxPiece ?? 4096, maxPauseMs: o.maxPauseMs ?? 2, pauseChance: o.pauseChance ?? 0.25 };
    this.server = net.createServer((client) => this.forward(client));
  }

  static async start(o: SplitProxyOptions): Promise<SplitProxy> {
    const p = new SplitProxy(o);
    await new Promise<void>((res, rej) => {
      p.server.once("error", rej);
      p.server.listen(0, "127.0.0.1", () => res());
    });
    return p;
  }

  /** host:port to dial instead of the target. */
  get addr(): string {
    const a = this.server.address() as net.AddressInfo;
    return `127.0.0.1:${a.port}`;
  }

  /** Forwards new connections elsewhere (e.g. to a restarted relay). */
  retarget(target: string): void {
    this.target = target;
  }

  /** Cuts every forwarded connection at once, as a network failure would (no Close frame). */
  cutAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  /**
   * Stops forwarding on the connections open now, keeping them open: the
   * peers see silence, as on a half-open connection. New connections are
   * forwarded as usual.
   */
  freeze(): void {
    for (const s of this.sockets) s.pause();
    for (const s of this.sockets) this.frozen.add(s);
  }

  async close(): Promise<void> {
    this.cutAll();
    await new Promise<void>((res) => this.server.close(() => res()));
  }

  private forward(client: net.Socket): void {
    const i = this.connIndex++;
    const [host, port] = splitHostPort(this.target);
    const upstream = net.connect(port, host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on("close", () => {
        this.sockets.delete(s);
        this.frozen.delete(s);
        client.destroy();
        upstream.destroy();
      });
      s.on("error", () => undefined);
    }
    this.pipe(client, upstream, prng(this.seed + 2 * i));
    this.pipe(upstream, client, prng(this.seed + 2 * i + 1));
  }

  /** Copies from → to in random pieces, in order, pausing from while to is full. */
  private pipe(from: net.Socket, to: net.Socket, random: () => number): void {
    const queue: Buffer[] = [];
    let busy = false;
    let ended = false;
    const pieceSize = () => {
      const band = Math.floor(random() * 3);
      const max = band === 0 ? 16 : band === 1 ? 512 : this.o.maxPiece;
      return 1 + Math.floor(random() * max);
    };
    const drain = async () => {
      busy = true;
      while (queue.length > 0 && !to.destroyed && !this.frozen.has(to)) {
        let chunk = queue.shift()!;
        while (chunk.length > 0 && !to.destroyed) {
          const n = Math.min(chunk.length, pieceSize());
          const ok = to.write(chunk.subarray(0, n));
          chunk = chunk.subarray(n);
          if (!ok) await new Promise((r) => to.once("drain", r));
          if (random() < this.o.pauseChance) await new Promise((r) => setTimeout(r, random() * this.o.maxPauseMs));
        }
      }
      busy = false;
      if (this.frozen.has(to)) return;
      if (ended && !to.destroyed) to.end();
      from.resume();
    };
    from.on("data", (b: Buffer) => {
      queue.push(b);
      if (queue.length > 16) from.pause();
      if (!busy) void drain();
    });
    from.on("end", () => {
      ended = true;
      if (!busy) to.end();
    });
  }
}

function splitHostPort(hp: string): [string, number] {
  const i = hp.lastIndexOf(":");
  return [hp.slice(0, i), Number(hp.slice(i + 1))];
}
