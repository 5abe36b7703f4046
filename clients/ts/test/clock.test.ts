// Clock sync: the relay's clock and the room's tick, estimated from Pongs.
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { ClockSync } from "../src/node.js";
import { eventually, startRelay, stopAll, type Relay } from "./helpers/relay.js";
import { closeClients, newClient, roomName } from "./helpers/clients.js";

let relay: Relay;
before(async () => {
  relay = await startRelay();
});
afterEach(closeClients);
after(stopAll);

test("estimatedServerTick follows the room's frames", async () => {
  // The relay runs on this machine: its clock is ours, so the offset must
  // come out near zero, and each frame's tick must be the estimate's floor
  // or close to it when the frame arrives.
  const a = newClient({ url: relay.url, clockSync: { intervalMs: 200 } });
  await a.connect();
  await a.join({ roomId: roomName(), createIfMissing: true, room: { tickRate: 20 } });
  await eventually(() => a.clockEstimate.samples >= 6, 10_000, "a few pongs");
  const { offsetMs, rttMs } = a.clockEstimate;
  assert.ok(Math.abs(offsetMs) < 50, `offset ${offsetMs} ms against our own clock`);
  assert.ok(rttMs >= 0 && rttMs < 1000, `rtt ${rttMs} ms`);
  assert.ok(Math.abs(a.serverTimeNow() - Date.now()) < 50);

  const gaps: number[] = [];
  a.on("frame", (f) => gaps.push(a.estimatedServerTick() - f.tick));
  const timer = setInterval(() => a.send("tick", { echo: true }), 25);
  try {
    await eventually(() => gaps.length >= 20, 10_000, "20 frames");
  } finally {
    clearInterval(timer);
  }
  // A frame for tick n leaves the relay during tick n, so on arrival the
  // estimate should be n plus a fraction; allow two ticks of scheduling noise.
  for (const g of gaps) assert.ok(g > -1 && g < 3, `estimate − frame tick = ${g.toFixed(2)} (all: ${gaps.map((x) => x.toFixed(2)).join(" ")})`);
  const est = a.estimatedServerTick();
  assert.ok(Number.isFinite(est) && est > 0);
});

test("ping measures a round trip outside a room too", async () => {
  const a = newClient({ url: relay.url, clockSync: false });
  await a.connect();
  const p = await a.ping();
  assert.ok(p.rttMs >= 0);
  assert.equal(p.tick, 0);
  assert.equal(p.tickRate, 0);
  assert.ok(Math.abs(p.serverTime - Date.now()) < 1000);
  assert.equal(a.estimatedServerTick(), 0, "no tick outside a room");
});

test("ClockSync narrows the tick origin from phases alone", () => {
  // A synthetic relay: tick n runs from origin + n·p; pongs at random times.
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const originServer = 1_700_000_000_000 + 123.4;
  const rate = 30;
  const p = 1000 / rate;
  const offset = 5_000; // relay clock − local clock
  let local = 0;
  const cs = new ClockSync((mono) => mono);
  for (let i = 0; i < 32; i++) {
    local += 100 + random() * 200;
    const rtt = 2 + random() * 4;
    const server = local + rtt / 2 + offset;
    const tick = Math.floor((server - originServer) / p);
    cs.add({ sentAt: local, receivedAt: local + rtt, serverTime: server, tick, tickRate: rate });
    local += rtt;
  }
  assert.ok(Math.abs(cs.estimate.offsetMs - offset) < 1, `offset ${cs.estimate.offsetMs}`);
  const truth = (local + offset - originServer) / p;
  const est = cs.serverTick(local);
  assert.ok(Math.abs(est - truth) < 0.25, `estimate ${est} vs ${truth}`);

  // A skipped schedule (the relay jumped ahead): the window starts over.
  const jump = 10;
  local += 300;
  const server = local + 1 + offset;
  cs.add({ sentAt: local, receivedAt: local + 2, serverTime: server, tick: Math.floor((server - originServer) / p) + jump, tickRate: rate });
  const after = cs.serverTick(local + 2);
  const truthAfter = (local + 2 + offset - originServer) / p + jump;
  assert.ok(Math.abs(after - truthAfter) < 1.5, `after a jump: ${after} vs ${truthAfter}`);
});
