// Builds the relay from this repository and runs it in child processes on
// free loopback ports, for tests against the real thing.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** The repository root (this file is clients/ts/build/test/helpers/relay.js once compiled). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../..");

let built: string | undefined;
const tempDirs: string[] = [];
const running = new Set<Relay>();

/**
 * The relay binary: $TICKRELAY_BIN if set, else `go build -o <tmp> .` from
 * the repository root, once per test process.
 */
export function relayBinary(): string {
  if (process.env.TICKRELAY_BIN) return process.env.TICKRELAY_BIN;
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), "tickrelay-ts-"));
    tempDirs.push(dir);
    const bin = join(dir, "tickrelay");
    execFileSync("go", ["build", "-o", bin, "."], { cwd: repoRoot, stdio: ["ignore", "inherit", "inherit"] });
    built = bin;
  }
  return built;
}

/** One relay process. */
export class Relay {
  /** host:port of the WebSocket listener. */
  addr = "";
  /** host:port of the admin API. */
  admin = "";
  /** Log lines (JSON objects) so far. */
  readonly logs: Record<string, unknown>[] = [];
  readonly exited: Promise<number | null>;
  private readonly proc: ChildProcess;

  constructor(args: string[]) {
    this.proc = spawn(
      relayBinary(),
      ["-log-format", "json", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", ...args],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    running.add(this);
    this.exited = new Promise((res) => {
      this.proc.on("exit", (code) => {
        running.delete(this);
        res(code);
      });
    });
    createInterface({ input: this.proc.stderr! }).on("line", (line) => {
      try {
        this.logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        this.logs.push({ msg: line });
      }
    });
  }

  /** ws://addr/ws */
  get url(): string {
    return `ws://${this.addr}/ws`;
  }

  /** Waits for the "listening" log line and reads the addresses from it. */
  async started(timeoutMs = 20_000): Promise<this> {
    const line = await this.awaitLog((l) => l.msg === "tickrelay listening", timeoutMs);
    this.addr = String(line.addr);
    this.admin = String(line.admin);
    return this;
  }

  /** Waits for a log line matching pred. */
  async awaitLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    let found: Record<string, unknown> | undefined;
    await eventually(() => (found = this.logs.find(pred)) !== undefined, timeoutMs, "relay log line");
    return found!;
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  /** Calls the admin API. */
  async adminCall(method: string, path: string, body?: unknown): Promise<Response> {
    return fetch(`http://${this.admin}${path}`, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  /** Kills the process and waits for it. */
  async stop(): Promise<void> {
    if (running.has(this)) this.proc.kill("SIGKILL");
    await this.exited;
  }
}

/** Starts a relay with extra flags and waits until it listens. */
export async function startRelay(...args: string[]): Promise<Relay> {
  return new Relay(args).started();
}

/** Kills every relay still running and removes the built binary. Call from after(). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((r) => r.stop()));
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

process.on("exit", () => {
  for (const r of running) r.signal("SIGKILL");
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** Polls cond every 10 ms until it holds; rejects after timeoutMs. */
export async function eventually(cond: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
