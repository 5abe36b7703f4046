// End to end: two Chromium pages and a Node client, through nginx (TLS on
// loopback, deploy/nginx/tickrelay.conf) to the relay. Bounded in time; every
// process is stopped at the end, even on failure.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { TickrelayClient, nodeWebSocket, type CloseInfo, type Delivery } from "@tickrelay/client";
import { eventually, freePort, goBuild, launchChromium, makeCert, repoRoot, startHaproxy, startNginx, startRelay, tempDir, type Proc } from "./procs.js";

/** nginx's proxy_read_timeout here; the relay pings silent clients every second. */
const READ_TIMEOUT_S = 3;

let relay: Proc;
let relayAddr: string;
let relayAdmin: string;
let nginx: Proc;
let haproxy: Proc | undefined;
let haproxyPort = 0;
let browser: BrowserContext;
let port: number;
let cert: ReturnType<typeof makeCert>;
const clients: TickrelayClient[] = [];

before(async () => {
  const bin = goBuild(".", "tickrelay");
  cert = makeCert(tempDir("e2e-tls-"));
  port = await freePort();
  const r = await startRelay(bin, [
    "-allowed-origins", `https://localhost:${port}`,
    "-ping-interval", "1s",
    "-idle-timeout", "5s",
    "-drain-timeout", "1s",
    // nginx is the trusted edge: its X-Forwarded-For names the client.
    "-trusted-proxies", "127.0.0.1/32",
  ]);
  relay = r.proc;
  relayAddr = r.addr;
  relayAdmin = r.admin;
  nginx = await startNginx({ port, relayAddr: r.addr, cert: cert.cert, key: cert.key, readTimeout: `${READ_TIMEOUT_S}s`, root: join(repoRoot, "demo/public") });
  haproxyPort = await freePort();
  haproxy = await startHaproxy({ port: haproxyPort, relayAddr: r.addr, pem: cert.pem, tunnelTimeout: `${READ_TIMEOUT_S}s` });
  browser = await launchChromium(cert.spki);
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await browser?.close();
  await nginx?.stop();
  await haproxy?.stop();
  await relay?.stop();
});

interface DemoState {
  state: string;
  playerId: number;
  status: string;
  peers: [number, { tx: number; ty: number; name: string }][];
  closes: { code: number; reason: string; willReconnect: boolean }[];
}

async function demo(page: Page): Promise<DemoState> {
  return page.evaluate(() => {
    const d = (window as unknown as { tickrelayDemo?: Record<string, any> }).tickrelayDemo;
    if (!d) return { state: "loading", playerId: 0, status: "", peers: [], closes: [] };
    return {
      state: d.client.state,
      playerId: d.client.playerId,
      status: d.status,
      peers: [...(d.peers as Map<number, any>).entries()].map(([id, p]) => [id, { tx: p.tx, ty: p.ty, name: p.name }]),
      closes: [...d.closes],
    } as DemoState;
  });
}

function nodeClient(extra: Partial<ConstructorParameters<typeof TickrelayClient>[0]> = {}, via = port): TickrelayClient {
  const c = new TickrelayClient({
    url: `wss://127.0.0.1:${via}/ws`,
    createWebSocket: nodeWebSocket({ ca: readFileSync(cert.cert) }),
    clockSync: false,
    reconnect: false,
    ...extra,
  });
  clients.push(c);
  return c;
}

function deliveriesOf(c: TickrelayClient): Delivery[] {
  const out: Delivery[] = [];
  c.on("frame", (f) => out.push(...f.deliveries));
  return out;
}

describe("browsers and Node through nginx with TLS", { timeout: 120_000 }, () => {
  let ann: Page;
  let bob: Page;
  let node: TickrelayClient;
  const nodeCloses: CloseInfo[] = [];
  let nodeGot: Delivery[];

  test("two pages join one room over wss:// and see each other move", async () => {
    ann = await browser.newPage();
    bob = await browser.newPage();
    // ping=off: the pages send no Pings of their own, so only the relay's
    // pings keep an idle tunnel alive (checked below).
    await ann.goto(`https://localhost:${port}/index.html?room=e2e&name=ann&ping=off`);
    await bob.goto(`https://localhost:${port}/index.html?room=e2e&name=bob&ping=off`);
    await eventually(async () => {
      const [a, b] = [await demo(ann), await demo(bob)];
      const moved = (s: DemoState) => s.peers.length === 1 && s.peers[0]![1].tx !== 0.5;
      return moved(a) && moved(b);
    }, 20_000, "each page has the other's dot, moving");
    const [a, b] = [await demo(ann), await demo(bob)];
    assert.equal(a.peers[0]![0], b.playerId);
    assert.equal(b.peers[0]![1].name, "ann");
    assert.match(a.status, /in room e2e/);
  });

  test("a Node client joins the same room over wss:// and sees them too", async () => {
    node = nodeClient();
    node.on("close", (i) => nodeCloses.push(i));
    nodeGot = deliveriesOf(node);
    await node.connect();
    const j = await node.join({ roomId: "e2e", metadata: { name: "node" } });
    assert.equal(j.members.length, 3);
    const [a, b] = [await demo(ann), await demo(bob)];
    await eventually(() => [a.playerId, b.playerId].every((id) => nodeGot.some((d) => d.sender === id)), 10_000, "positions from both pages");
    const p = JSON.parse(new TextDecoder().decode(nodeGot.at(-1)!.payload)) as { x: number; y: number };
    assert.ok(p.x >= 0 && p.x <= 1 && p.y >= 0 && p.y <= 1);
    node.send(JSON.stringify({ x: 0.1, y: 0.9 }), { kind: 1, latestOnly: true });
    for (const page of [ann, bob]) {
      await eventually(async () => (await demo(page)).peers.some(([id, d]) => id === j.playerId && d.tx === 0.1 && d.ty === 0.9), 10_000, "the Node player's dot on a page");
    }
  });

  test("behind nginx the relay sees the client's address; a forged X-Forwarded-For counts for nothing", async () => {
    // The client dials from 127.0.0.2 (not a trusted proxy) and forges the
    // header; nginx, the edge, overwrites it with the address it saw.
    const forged = { "X-Forwarded-For": "203.0.113.9" };
    const viaEdge = nodeClient({ createWebSocket: nodeWebSocket({ ca: readFileSync(cert.cert), localAddress: "127.0.0.2", headers: forged }) });
    await viaEdge.connect();
    await viaEdge.join({ roomId: "addr-edge", createIfMissing: true });
    // Straight to the relay from an untrusted peer: the header is ignored.
    const direct = new TickrelayClient({
      url: `ws://${relayAddr}/ws`,
      createWebSocket: nodeWebSocket({ localAddress: "127.0.0.3", headers: forged }),
      clockSync: false,
      reconnect: false,
    });
    clients.push(direct);
    await direct.connect();
    await direct.join({ roomId: "addr-direct", createIfMissing: true });
    const memberAddress = async (room: string) => {
      const res = await fetch(`http://${relayAdmin}/v1/rooms/${room}`);
      assert.equal(res.status, 200);
      const body = (await res.json()) as { members: { address: string }[] };
      return body.members[0]!.address;
    };
    assert.equal(await memberAddress("addr-edge"), "127.0.0.2");
    assert.equal(await memberAddress("addr-direct"), "127.0.0.3");
    await viaEdge.close();
    await direct.close();
  });

  let viaHaproxy: TickrelayClient | undefined;
  const haproxyCloses: CloseInfo[] = [];
  test("a Node client through HAProxy (deploy/haproxy/haproxy.cfg) joins the room too", async (t) => {
    if (!haproxy) {
      t.skip("haproxy is not installed");
      return;
    }
    viaHaproxy = nodeClient({}, haproxyPort);
    viaHaproxy.on("close", (i) => haproxyCloses.push(i));
    const got = deliveriesOf(viaHaproxy);
    await viaHaproxy.connect();
    await viaHaproxy.join({ roomId: "e2e", metadata: { name: "haproxy" } });
    const a = await demo(ann);
    await eventually(() => got.some((d) => d.sender === a.playerId), 10_000, "a page's positions through HAProxy");
  });

  test(`an idle connection outlives the proxies' ${READ_TIMEOUT_S} s timeouts`, async () => {
    await ann.evaluate(() => (window as unknown as { tickrelayDemo: { pause(): void } }).tickrelayDemo.pause());
    await bob.evaluate(() => (window as unknown as { tickrelayDemo: { pause(): void } }).tickrelayDemo.pause());
    // Nothing is sent for longer than the timeout: this wait is the
    // condition under test, not synchronisation. The relay pings the silent
    // connections every second; without that nginx would close them.
    const idleMs = READ_TIMEOUT_S * 1000 + 1_500;
    // (No check of the time waited against Date.now(): Node's timers may
    // fire a millisecond early by the wall clock, which failed CI once.)
    await new Promise((r) => setTimeout(r, idleMs));
    for (const page of [ann, bob]) {
      const s = await demo(page);
      assert.deepEqual(s.closes, [], "no page lost its connection");
      assert.equal(s.state, "open");
    }
    assert.deepEqual(nodeCloses, []);
    assert.deepEqual(haproxyCloses, [], "the client through HAProxy kept its tunnel");
    const before = nodeGot.length;
    await ann.evaluate(() => (window as unknown as { tickrelayDemo: { resume(): void } }).tickrelayDemo.resume());
    await eventually(() => nodeGot.length > before, 10_000, "traffic after the idle time, on the same connections");
  });

  test("a page from an Origin not on the allow-list is refused and shows why", async () => {
    const stranger = await browser.newPage();
    // Same server, other origin: https://127.0.0.1:port is not allowed.
    await stranger.goto(`https://127.0.0.1:${port}/index.html?room=e2e&name=stranger`);
    await eventually(async () => (await demo(stranger)).closes.length > 0 && (await demo(stranger)).state === "closed", 15_000, "the refusal");
    const s = await demo(stranger);
    assert.deepEqual(s.closes, [{ code: 4503, reason: "origin not allowed", willReconnect: false }]);
    assert.equal(await stranger.textContent("#status"), "refused: closed 4503: origin not allowed");
    await stranger.close();
  });

  test("SIGTERM drains: the pages get close 1001 with its reason", async () => {
    relay.signal("SIGTERM");
    const reason = "server draining: reconnect to resume";
    for (const page of [ann, bob]) {
      await eventually(async () => (await demo(page)).closes.some((c) => c.code === 1001), 15_000, "close 1001 at a page");
      const s = await demo(page);
      assert.deepEqual(s.closes[0], { code: 1001, reason, willReconnect: true });
      await eventually(async () => /closed 1001: server draining: reconnect to resume/.test((await page.textContent("#status")) ?? "") || (await demo(page)).closes.length > 1, 5_000, "the reason on the page");
    }
    await eventually(() => nodeCloses.length > 0, 10_000, "close at the Node client");
    assert.equal(nodeCloses[0]!.code, 1001);
    assert.equal(nodeCloses[0]!.cause?.name, "draining");
    assert.equal(await relay.exited, 0, "the relay exits 0 after its drain");
  });
});
