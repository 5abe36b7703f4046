// Lost connections and the relay's closes: what the client tells and whether
// it reconnects, by the close-code table.
import { after, afterEach, test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  ErrorCode,
  LeaveReason,
  nodeWebSocket,
  ResumeFailure,
  type CloseInfo,
  type Joined,
  type ResyncInfo,
  type ReconnectedInfo,
  type ReconnectingInfo,
} from "../src/node.js";
import { eventually, startRelay, stopAll, type Relay } from "./helpers/relay.js";
import { SplitProxy } from "./helpers/splitproxy.js";
import { closeClients, newClient, Recorder, roomName, text } from "./helpers/clients.js";

const proxies: SplitProxy[] = [];
afterEach(async () => {
  await closeClients();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});
after(stopAll);

async function proxyTo(addr: string): Promise<SplitProxy> {
  const p = await SplitProxy.start({ target: addr });
  proxies.push(p);
  return p;
}

/** A short backoff, so tests spend little time waiting. */
const fast = { initialDelayMs: 20, maxDelayMs: 200 };

function watch(c: ReturnType<typeof newClient>) {
  const closes: CloseInfo[] = [];
  const reconnecting: ReconnectingInfo[] = [];
  const reconnected: ReconnectedInfo[] = [];
  c.on("close", (i) => closes.push(i));
  c.on("reconnecting", (i) => reconnecting.push(i));
  c.on("reconnected", (i) => reconnected.push(i));
  return { closes, reconnecting, reconnected };
}

/** An address nothing listens on: a proxy retargeted there refuses every new connection. */
const nowhere = "127.0.0.1:1";

test("a cut connection resumes the seat: same player, PLAYER_AWAY and PLAYER_BACK at the others", async () => {
  const relay = await startRelay();
  const proxy = await proxyTo(relay.addr);
  const room = roomName();
  const a = newClient({ url: `ws://${proxy.addr}/ws`, reconnect: fast });
  const b = newClient({ url: relay.url });
  await Promise.all([a.connect(), b.connect()]);
  const ja = await a.join({ roomId: room, createIfMissing: true, metadata: { name: "ann" } });
  assert.ok(ja.seatGraceMs > 0, "the relay keeps seats");
  await b.join({ roomId: room });
  const wa = watch(a);
  const rb = new Recorder(b);
  const away: number[] = [];
  const back: number[] = [];
  const left: number[] = [];
  b.on("playerAway", (m) => away.push(m.playerId));
  b.on("playerBack", (m) => back.push(m.playerId));
  b.on("playerLeft", (m) => left.push(m.playerId));

  // Hold the reconnect until the relay has noticed the loss, so that the
  // others see the player away (a quicker Resume would hide it).
  proxy.retarget(nowhere);
  proxy.cutAll();
  await eventually(() => away.includes(ja.playerId), 10_000, "PLAYER_AWAY at b");
  assert.equal(b.member(ja.playerId)?.away, true);
  assert.equal(a.send("while away"), true, "queued for the resume");
  proxy.retarget(relay.addr);
  await eventually(() => wa.reconnected.length === 1, 15_000, "a reconnected");
  assert.equal(wa.closes[0]!.code, 1006);
  assert.equal(wa.closes[0]!.willReconnect, true);
  const info = wa.reconnected[0]!;
  assert.equal(info.resumed?.recovered, true, "the seat is back");
  assert.equal(info.rejoined, undefined, "no new seat");
  assert.equal(a.playerId, ja.playerId);
  assert.equal(a.state, "open");
  await eventually(() => back.includes(ja.playerId), 10_000, "PLAYER_BACK at b");
  assert.equal(b.member(ja.playerId)?.away, false);
  assert.deepEqual(left, [], "the seat never left");

  a.send("back again");
  await rb.waitFor(2);
  assert.deepEqual(rb.texts(), ["while away", "back again"], "the queued send first, each once");
  assert.equal(rb.deliveries[1]!.sender, ja.playerId);
  assert.equal(a.stats.recovered, 1);
});

test("with resume off on the relay (seat-grace off) a cut connection rejoins as a new seat", async () => {
  const relay = await startRelay("-seat-grace", "off");
  const proxy = await proxyTo(relay.addr);
  const room = roomName();
  const a = newClient({ url: `ws://${proxy.addr}/ws`, reconnect: fast });
  const b = newClient({ url: relay.url });
  await Promise.all([a.connect(), b.connect()]);
  const ja = await a.join({ roomId: room, createIfMissing: true, metadata: { name: "ann" } });
  assert.equal(ja.seatGraceMs, 0);
  await b.join({ roomId: room });
  const wa = watch(a);
  const rb = new Recorder(b);
  const left: number[] = [];
  b.on("playerLeft", (m) => left.push(m.playerId));

  proxy.cutAll();
  await eventually(() => wa.reconnected.length === 1, 15_000, "a reconnected");
  const again = wa.reconnected[0]!.rejoined;
  assert.ok(again, "rejoined the room");
  assert.equal(wa.reconnected[0]!.resumed, undefined, "no resume tried: the relay gave no token");
  assert.equal(again.roomId, room);
  assert.notEqual(again.playerId, ja.playerId, "a new seat");
  assert.equal(a.playerId, again.playerId);
  await eventually(() => left.includes(ja.playerId), 10_000, "the old seat left");
  await eventually(() => b.members.some((m) => m.playerId === again.playerId && m.metadata.name === "ann"), 10_000, "the new seat at b");

  a.send("back again");
  await rb.waitFor(1);
  assert.equal(text(rb.deliveries[0]!.payload), "back again");
  assert.equal(rb.deliveries[0]!.sender, again.playerId);
});

test("connections cut mid-stream: no frame lost or duplicated, every send delivered once", async (t) => {
  const relay = await startRelay();
  const proxy = await proxyTo(relay.addr);
  const room = roomName();
  // a goes through the proxy that cuts (and splits every write); b is direct.
  const a = newClient({ url: `ws://${proxy.addr}/ws`, reconnect: fast });
  const b = newClient({ url: relay.url });
  await Promise.all([a.connect(), b.connect()]);
  const ja = await a.join({ roomId: room, createIfMissing: true, room: { tickRate: 30 } });
  const jb = await b.join({ roomId: room });
  const wa = watch(a);
  const ra = new Recorder(a);
  const rb = new Recorder(b);

  const total = 300;
  const cuts = 4;
  let sent = 0;
  // Both stream numbered messages at each other, a few per tick, while a's
  // connection is cut again and again.
  const pump = setInterval(() => {
    for (let k = 0; k < 3 && sent < total; k++, sent++) {
      assert.equal(a.send(`a${sent}`), true, `a's send ${sent} kept`);
      b.send(`b${sent}`, { targets: [ja.playerId] });
    }
  }, 5);
  try {
    for (let i = 1; i <= cuts; i++) {
      await eventually(() => sent >= (i * total) / (cuts + 1), 20_000, `stream past cut ${i}`);
      proxy.cutAll();
      await eventually(() => wa.reconnected.length === i, 15_000, `a reconnected after cut ${i}`);
      assert.equal(wa.reconnected[i - 1]!.resumed?.recovered, true, `cut ${i}: the seat recovered`);
    }
    await eventually(() => sent === total, 20_000, "all sent");
  } finally {
    clearInterval(pump);
  }
  const want = (p: string) => Array.from({ length: total }, (_, i) => `${p}${i}`);
  await ra.waitFor(total, "b's messages at a", 20_000);
  await rb.waitFor(total, "a's messages at b", 20_000);
  assert.deepEqual(ra.texts(), want("b"), "a got every message of b once, in order");
  assert.deepEqual(rb.texts(), want("a"), "b got every message of a once, in order");
  assert.ok(rb.deliveries.every((d) => d.sender === ja.playerId));
  assert.ok(ra.deliveries.every((d) => d.sender === jb.playerId));
  const seqs = ra.frames.map((f) => f.seq);
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), "a's frames: every seq once, in order");
  assert.equal(a.playerId, ja.playerId);
  const st = a.stats;
  assert.equal(st.recovered, cuts);
  assert.equal(st.resyncs, 0);
  assert.equal(st.inputsLost, 0);
  t.diagnostic(`stats: ${JSON.stringify(st)}`);
});

/** The relay's gauge of frames kept for replay, from its /metrics. */
async function replayBytes(relay: Relay): Promise<number> {
  const res = await relay.adminCall("GET", "/metrics");
  const line = (await res.text()).split("\n").find((l) => l.startsWith("tickrelay_replay_bytes "));
  assert.ok(line, "tickrelay_replay_bytes in /metrics");
  return Number(line.split(" ")[1]);
}

test("acknowledgements: the relay lets go of the frames of a client that only receives", async () => {
  const relay = await startRelay();
  const room = roomName();
  // No clock-sync Pings either (they would carry acknowledgements too).
  const a = newClient({ url: relay.url, clockSync: false });
  const b = newClient({ url: relay.url });
  await Promise.all([a.connect(), b.connect()]);
  const ja = await a.join({ roomId: room, createIfMissing: true });
  await b.join({ roomId: room });
  const ra = new Recorder(a);
  const big = "x".repeat(1000);
  for (let i = 0; i < 20; i++) b.send(big, { targets: [ja.playerId] });
  await ra.waitFor(20);
  const held = await replayBytes(relay);
  assert.ok(held >= 20_000, `the frames are held until acknowledged: ${held} bytes`);
  // a sends nothing: only its idle acknowledgements let the relay drop
  // those frames, which it does as it pushes the next ones.
  const deadline = Date.now() + 10_000;
  let now = held;
  while (now >= 20_000 && Date.now() < deadline) {
    b.send("small", { targets: [ja.playerId] });
    await new Promise((r) => setTimeout(r, 100));
    now = await replayBytes(relay);
  }
  assert.ok(now < 20_000, `acknowledged frames dropped: ${now} bytes held`);
});

test("resume: false rejoins as a new seat even when the relay keeps seats", async () => {
  const relay = await startRelay();
  const proxy = await proxyTo(relay.addr);
  const room = roomName();
  const a = newClient({ url: `ws://${proxy.addr}/ws`, reconnect: fast, resume: false });
  await a.connect();
  const ja = await a.join({ roomId: room, createIfMissing: true });
  assert.ok(ja.seatGraceMs > 0);
  const wa = watch(a);
  proxy.retarget(nowhere);
  proxy.cutAll();
  await eventually(() => a.state === "reconnecting", 10_000, "reconnecting");
  assert.equal(a.send("dropped"), false, "nothing is queued without resume");
  proxy.retarget(relay.addr);
  await eventually(() => wa.reconnected.length === 1, 15_000, "a reconnected");
  assert.equal(wa.reconnected[0]!.resumed, undefined);
  assert.notEqual(wa.reconnected[0]!.rejoined?.playerId, ja.playerId, "a new seat");
});

test("a seat that expired while the client was away: resync on a new seat", async () => {
  const relay = await startRelay("-seat-grace", "300ms");
  const proxy = await proxyTo(relay.addr);
  const room = roomName();
  const a = newClient({ url: `ws://${proxy.addr}/ws`, reconnect: fast });
  const b = newClient({ url: relay.url });
  await Promise.all([a.connect(), b.connect()]);
  const ja = await a.join({ roomId: room, createIfMissing: true, metadata: { name: "ann" } });
  const jb = await b.join({ roomId: room });
  const wa = watch(a);
  const resyncs: ResyncInfo[] = [];
  const joins: Joined[] = [];
  a.on("resync", (r) => resyncs.push(r));
  a.on("joined", (j) => joins.push(j));
  const left: [number, LeaveReason][] = [];
  b.on("playerLeft", (m, why) => left.push([m.playerId, why]));
  const rb = new Recorder(b);

  proxy.retarget(nowhere);
  proxy.cutAll();
  await eventually(() => left.length === 1, 10_000, "the seat given up at b");
  assert.deepEqual(left[0], [ja.playerId, LeaveReason.SEAT_EXPIRED]);
  assert.equal(a.send("lost with the seat"), true, "queued: the client cannot know yet");
  proxy.retarget(relay.addr);
  await eventually(() => wa.reconnected.length === 1, 15_000, "a reconnected");

  assert.equal(resyncs.length, 1);
  const r = resyncs[0]!;
  assert.equal(r.reason, ResumeFailure.SEAT_EXPIRED);
  assert.equal(r.previousPlayerId, ja.playerId);
  assert.notEqual(r.joined.playerId, ja.playerId, "a new seat");
  assert.equal(a.playerId, r.joined.playerId);
  assert.equal(joins.at(-1)?.playerId, r.joined.playerId, "joined for the new seat, before the resync");
  assert.deepEqual(r.joined.members.map((m) => m.playerId), [jb.playerId, r.joined.playerId], "the room as it is now");
  const info = wa.reconnected[0]!;
  assert.equal(info.resumed?.recovered, false);
  assert.equal(info.resumed?.failure, ResumeFailure.SEAT_EXPIRED);
  assert.equal(info.rejoined?.playerId, r.joined.playerId);
  assert.equal(a.stats.resyncs, 1);
  assert.equal(a.stats.inputsLost, 1, "the send queued for the old seat");

  a.send("new seat");
  await rb.waitFor(1);
  assert.deepEqual(rb.texts(), ["new seat"], "the old seat's queued send is not delivered");
  assert.equal(rb.deliveries[0]!.sender, r.joined.playerId);
});

test("after the relay is killed the client backs off until one is back", async () => {
  const first = await startRelay();
  const proxy = await proxyTo(first.addr);
  const room = roomName();
  const a = newClient({ url: `ws://${proxy.addr}/ws`, reconnect: fast });
  await a.connect();
  await a.join({ roomId: room, createIfMissing: true, room: { tickRate: 15 } });
  const wa = watch(a);

  await first.stop(); // SIGKILL: no Close frame, the room is gone
  // Until a relay is back the attempts fail, and the delays grow.
  await eventually(() => wa.reconnecting.length >= 4, 15_000, "several attempts");
  const delays = wa.reconnecting.map((r) => r.delayMs);
  assert.ok(delays[3]! > delays[0]!, `backoff grows: ${delays.map((d) => d.toFixed(0)).join(", ")}`);
  assert.equal(a.state, "reconnecting");
  assert.equal(a.send("lost"), true, "queued for a resume");

  const second = await startRelay();
  proxy.retarget(second.addr);
  await eventually(() => wa.reconnected.length === 1, 15_000, "reconnected to the new relay");
  const info = wa.reconnected[0]!;
  assert.ok(info.attempts >= 4);
  assert.ok(info.rejoined, "the room was made again: this client created it");
  assert.equal(info.rejoined.roomId, room);
  assert.equal(info.rejoined.tickRate, 15, "with its options");
  assert.equal(info.resumed?.failure, ResumeFailure.ROOM_GONE, "the new relay does not know the room");
  assert.equal(a.stats.inputsLost, 1, "the queued send went with the room");
});

test("drain: close 1001 with the relay's reason, then reconnect elsewhere", async () => {
  const draining = await startRelay("-drain-timeout", "300ms");
  const other = await startRelay();
  const room = roomName();
  let target = draining.url;
  const a = newClient({ url: () => target, reconnect: fast });
  await a.connect();
  await a.join({ roomId: room, createIfMissing: true });
  const wa = watch(a);
  const errors: ErrorCode[] = [];
  a.on("error", (e) => errors.push(e.code));

  target = other.url; // where a load balancer would send the next connection
  draining.signal("SIGTERM");
  await eventually(() => wa.reconnected.length === 1, 15_000, "reconnected elsewhere");
  const close = wa.closes[0]!;
  assert.equal(close.code, 1001);
  assert.equal(close.reason, "server draining: reconnect to resume");
  assert.equal(close.cause?.name, "draining");
  assert.equal(close.error?.code, ErrorCode.DRAINING, "the Error sent before the Close explains it");
  assert.equal(close.mayReconnect, true);
  assert.ok(errors.includes(ErrorCode.DRAINING));
  assert.equal(wa.reconnected[0]!.rejoined?.roomId, room);
  assert.equal(await draining.exited, 0, "the drained relay exits 0");
});

test("kicked: 4500, and no reconnect", async () => {
  const relay = await startRelay();
  const room = roomName();
  const a = newClient({ url: relay.url, reconnect: fast });
  await a.connect();
  const j = await a.join({ roomId: room, createIfMissing: true });
  const wa = watch(a);
  const left: LeaveReason[] = [];
  a.on("left", (l) => left.push(l.reason));

  const res = await relay.adminCall("POST", `/v1/rooms/${room}/players/${j.playerId}/kick`, { reason: "test" });
  assert.ok(res.ok, `kick: HTTP ${res.status} ${await res.text()}`);
  await eventually(() => a.state === "closed", 10_000, "closed for good");
  assert.equal(left[0], LeaveReason.KICKED);
  assert.equal(wa.closes[0]!.code, 4500);
  assert.equal(wa.closes[0]!.cause?.name, "kicked");
  assert.equal(wa.closes[0]!.mayReconnect, false);
  assert.equal(wa.reconnecting.length, 0);
});

test("an Origin not on the allow-list: connect() rejects with 4503 and its reason", async () => {
  const relay = await startRelay("-allowed-origins", "https://game.example");
  const bad = newClient({ url: relay.url, createWebSocket: nodeWebSocket({ origin: "https://evil.example" }), reconnect: fast });
  const wb = watch(bad);
  const err = await bad.connect().then(
    () => assert.fail("connected"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConnectionClosedError);
  assert.equal(err.close.code, 4503);
  assert.equal(err.close.reason, "origin not allowed");
  assert.equal(err.close.cause?.name, "origin_refused");
  assert.equal(err.close.mayReconnect, false);
  assert.equal(wb.reconnecting.length, 0, "no attempt after a refusal that would repeat");
  assert.equal(bad.state, "closed");

  const good = newClient({ url: relay.url, createWebSocket: nodeWebSocket({ origin: "https://GAME.example" }) });
  await good.connect();
  assert.equal(good.state, "open");
});

test("server full: 4002 with retry_after_ms, and the client gets in once there is room", async () => {
  const relay = await startRelay("-max-connections", "1");
  const a = newClient({ url: relay.url });
  await a.connect();
  const b = newClient({ url: relay.url, reconnect: fast });
  const wb = watch(b);
  const connected = b.connect();
  await eventually(() => wb.reconnecting.length >= 1, 10_000, "a refused attempt");
  const close = wb.reconnecting[0]!.close;
  assert.equal(close.code, 4002);
  assert.equal(close.reason, "server full");
  assert.equal(close.error?.code, ErrorCode.SERVER_FULL);
  assert.ok(wb.reconnecting[0]!.delayMs >= close.error!.retryAfterMs, "the backoff honours retry_after_ms");
  await a.close();
  await connected;
  assert.equal(b.state, "open");
});

test("a relay that stops answering is detected and replaced", async () => {
  const relay = await startRelay();
  const proxy = await proxyTo(relay.addr);
  const a = newClient({ url: `ws://${proxy.addr}/ws`, reconnect: fast, clockSync: { intervalMs: 100 }, deadAfterMs: 500 });
  await a.connect();
  const wa = watch(a);
  // Freeze the path: the TCP connection stays up, nothing gets through (a
  // network that changed under a phone, a half-open connection).
  proxy.freeze();
  await eventually(() => wa.closes.length >= 1, 10_000, "the dead connection noticed");
  assert.equal(wa.closes[0]!.code, 1006);
  assert.match(wa.closes[0]!.reason, /nothing from the relay within 500 ms/);
  proxy.retarget(relay.addr);
  await eventually(() => a.state === "open", 10_000, "a new connection");
});
