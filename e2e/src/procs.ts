// Processes for the end-to-end test and the demo screenshot: the relay, the
// demo's static server, nginx (unprivileged, foreground, from a temp prefix)
// and headless Chromium. Every process started here is killed when the test
// process ends, however it ends.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir, userInfo } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext } from "playwright-core";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

const children = new Set<ChildProcess>();
const cleanups: (() => void)[] = [];

function killAll(): void {
  for (const c of children) c.kill("SIGKILL");
  for (const f of cleanups.splice(0)) f();
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

/** A fresh temp directory, removed at exit. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Polls cond every 20 ms until it holds; rejects after timeoutMs. */
export async function eventually(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A child process with its output kept. */
export class Proc {
  readonly output: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    cwd = repoRoot,
  ) {
    this.child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    children.add(this.child);
    this.exited = new Promise((res) =>
      this.child.on("exit", (code) => {
        children.delete(this.child);
        res(code);
      }),
    );
    for (const s of [this.child.stdout!, this.child.stderr!]) createInterface({ input: s }).on("line", (l) => this.output.push(l));
  }
  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }
  get running(): boolean {
    return children.has(this.child);
  }
  async stop(): Promise<void> {
    if (this.running) this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 3_000);
    await this.exited;
    clearTimeout(timer);
  }
  /** The first output line matching re, waiting for it. */
  async line(re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    let m: RegExpExecArray | null = null;
    await eventually(
      () => {
        if (!this.running && !this.output.some((l) => re.test(l))) throw new Error(`${this.name} exited:\n${this.output.join("\n")}`);
        return this.output.some((l) => (m = re.exec(l)) !== null);
      },
      timeoutMs,
      `${this.name}: ${re}`,
    );
    return m!;
  }
}

/** go build -o <tmp>/name pkg, from the repository root. */
export function goBuild(pkg: string, name: string): string {
  const out = join(tempDir(`e2e-${name}-`), name);
  execFileSync("go", ["build", "-o", out, pkg], { cwd: repoRoot, stdio: ["ignore", "inherit", "inherit"] });
  return out;
}

/** A relay on a free loopback port; resolves with it and its address. */
export async function startRelay(bin: string, args: string[]): Promise<{ proc: Proc; addr: string; admin: string }> {
  const proc = new Proc("relay", bin, ["-log-format", "json", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", ...args]);
  const m = await proc.line(/"msg":"tickrelay listening".*"addr":"([^"]+)".*"admin":"([^"]*)"/);
  return { proc, addr: m[1]!, admin: m[2]! };
}

/** A free TCP port on 127.0.0.1, for a program that cannot report the one it bound. */
export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => res(port));
    });
  });
}

/** A self-signed certificate for localhost and 127.0.0.1, and its SPKI hash (for Chromium). */
export function makeCert(dir: string): { cert: string; key: string; spki: string; pem: string } {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-keyout", key, "-out", cert,
  ], { stdio: "ignore" });
  const der = execFileSync("openssl", ["x509", "-in", cert, "-pubkey", "-noout"]);
  const pub = execFileSync("openssl", ["pkey", "-pubin", "-outform", "der"], { input: der });
  const spki = execFileSync("openssl", ["dgst", "-sha256", "-binary"], { input: pub }).toString("base64");
  // HAProxy wants the chain and the key in one file.
  const pem = join(dir, "both.pem");
  writeFileSync(pem, readFileSync(cert, "utf8") + readFileSync(key, "utf8"));
  return { cert, key, spki, pem };
}

/** Replaces each `from` in text once; a missing one is an error (the reference config changed). */
export function substitute(text: string, pairs: [string, string][]): string {
  for (const [from, to] of pairs) {
    if (!text.includes(from)) throw new Error(`reference config lacks ${JSON.stringify(from)}`);
    text = text.replace(from, to);
  }
  return text;
}

/** nginx in the foreground from a temp prefix, serving deploy/nginx/tickrelay.conf as substituted. */
export async function startNginx(opts: {
  port: number;
  relayAddr: string;
  cert: string;
  key: string;
  readTimeout: string;
  root: string;
}): Promise<Proc> {
  const dir = tempDir("e2e-nginx-");
  mkdirSync(join(dir, "logs"));
  const site = substitute(readFileSync(join(repoRoot, "deploy/nginx/tickrelay.conf"), "utf8"), [
    ["server 127.0.0.1:7600;", `server ${opts.relayAddr};`],
    ["listen 443 ssl;", `listen 127.0.0.1:${opts.port} ssl;`],
    ["listen [::]:443 ssl;", ""],
    ["server_name game.example.com;", "server_name localhost 127.0.0.1;"],
    ["/etc/ssl/tickrelay/fullchain.pem", opts.cert],
    ["/etc/ssl/tickrelay/privkey.pem", opts.key],
    ["proxy_read_timeout 75s;", `proxy_read_timeout ${opts.readTimeout};`],
    ["proxy_send_timeout 75s;", `proxy_send_timeout ${opts.readTimeout};`],
    ["root /srv/game;", `root ${opts.root};`],
  ]);
  writeFileSync(join(dir, "tickrelay.conf"), site);
  writeFileSync(
    join(dir, "nginx.conf"),
    // Workers as the user running the tests: nginx started as root runs
    // them as nobody, which cannot read a checkout under a 0700 directory
    // (mktemp -d) and answered the demo page with 403.
    `user ${userInfo().username};
worker_processes 1;
error_log ${dir}/logs/error.log info;
events { worker_connections 256; }
http {
  include /etc/nginx/mime.types;
  access_log ${dir}/logs/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${dir}/tickrelay.conf;
}
`,
  );
  const proc = new Proc("nginx", "nginx", ["-p", dir, "-c", "nginx.conf", "-e", `${dir}/logs/error.log`, "-g", `daemon off; pid ${dir}/nginx.pid;`]);
  await eventually(async () => {
    if (!proc.running) throw new Error(`nginx exited: ${proc.output.join("\n")}\n${safeRead(join(dir, "logs/error.log"))}`);
    return canConnect(opts.port);
  }, 10_000, "nginx listening");
  return proc;
}

function safeRead(p: string): string {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      res(true);
    });
    s.once("error", () => res(false));
  });
}

/** Headless Debian Chromium with a fresh profile, trusting only the given certificate key. */
export async function launchChromium(spki?: string): Promise<BrowserContext> {
  const profile = tempDir("e2e-chromium-");
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Chromium resolves localhost to ::1 first; nginx listens on 127.0.0.1.
    "--host-resolver-rules=MAP localhost 127.0.0.1",
  ];
  if (spki) args.push(`--ignore-certificate-errors-spki-list=${spki}`);
  return chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args,
    viewport: { width: 640, height: 420 },
    timeout: 60_000,
  });
}

/** HAProxy in the foreground, serving deploy/haproxy/haproxy.cfg as substituted; undefined when it is not installed. */
export async function startHaproxy(opts: { port: number; relayAddr: string; pem: string; tunnelTimeout: string }): Promise<Proc | undefined> {
  try {
    execFileSync("haproxy", ["-v"], { stdio: "ignore" });
  } catch {
    return undefined;
  }
  const dir = tempDir("e2e-haproxy-");
  const cfg = substitute(readFileSync(join(repoRoot, "deploy/haproxy/haproxy.cfg"), "utf8"), [
    ["bind :443 ssl crt /etc/ssl/tickrelay/tickrelay.pem", `bind 127.0.0.1:${opts.port} ssl crt ${opts.pem}`],
    ["server relay1 127.0.0.1:7600 check", `server relay1 ${opts.relayAddr} check`],
    ["timeout tunnel 75s", `timeout tunnel ${opts.tunnelTimeout}`],
  ]);
  writeFileSync(join(dir, "haproxy.cfg"), cfg);
  const proc = new Proc("haproxy", "haproxy", ["-db", "-f", join(dir, "haproxy.cfg")]);
  await eventually(async () => {
    if (!proc.running) throw new Error(`haproxy exited: ${proc.output.join("\n")}`);
    return canConnect(opts.port);
  }, 10_000, "haproxy listening");
  return proc;
}
