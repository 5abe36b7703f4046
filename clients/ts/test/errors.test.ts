// Refusals from the relay: typed errors with their request id and code.
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionClosedError, ErrorCode, TickrelayClient, TickrelayError } from "../src/node.js";
import { TickrelayClient as BrowserEntryClient } from "../src/index.js";
import { eventually, startRelay, stopAll, type Relay } from "./helpers/relay.js";
import { closeClients, closeProxies, newClient, roomName, transports } from "./helpers/clients.js";

let relay: Relay;
before(async () => {
  relay = await startRelay();
});
afterEach(closeClients);
after(async () => {
  await closeProxies();
  await stopAll();
});

async function rejection(p: Promise<unknown>): Promise<TickrelayError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TickrelayError, `a TickrelayError, not ${String(err)}`);
    return err;
  }
  assert.fail("the request succeeded");
}

for (const transport of transports) {
  test(`ROOM_NOT_FOUND and ROOM_FULL carry their request ids (${transport.name})`, async () => {
    const a = newClient({ url: await transport.url(relay) });
    const b = newClient({ url: await transport.url(relay) });
    await Promise.all([a.connect(), b.connect()]);

    const notFound = await rejection(b.join({ roomId: roomName("missing") }));
    assert.equal(notFound.code, ErrorCode.ROOM_NOT_FOUND);
    assert.equal(notFound.codeName, "ROOM_NOT_FOUND");
    assert.ok(notFound.requestId > 0);

    const room = roomName("small");
    await a.join({ roomId: room, createIfMissing: true, room: { maxPlayers: 1 } });
    const full = await rejection(b.join({ roomId: room }));
    assert.equal(full.code, ErrorCode.ROOM_FULL);
    assert.ok(full.requestId > notFound.requestId, "each request has its own id");
    assert.match(full.detail, /players/);

    // Pipelined: both refusals come back, each matched to its own request.
    const [x, y] = await Promise.all([rejection(b.join({ roomId: room })), rejection(b.join({ roomId: roomName("missing") }))]);
    assert.deepEqual([x.code, y.code], [ErrorCode.ROOM_FULL, ErrorCode.ROOM_NOT_FOUND]);
    assert.equal(y.requestId, x.requestId + 1);

    // The connection is unharmed.
    const j = await b.join({ roomId: roomName("other"), createIfMissing: true });
    assert.ok(j.playerId > 0);
  });
}

test("refusals of unanswered requests arrive as error events", async () => {
  const a = newClient({ url: relay.url });
  await a.connect();
  const errors: TickrelayError[] = [];
  a.on("error", (e) => errors.push(e));
  assert.equal(a.send("nobody hears this"), true);
  await eventually(() => errors.length === 1, 10_000, "NOT_IN_ROOM");
  assert.equal(errors[0]!.code, ErrorCode.NOT_IN_ROOM);
  assert.equal(errors[0]!.requestId, 0);

  const notIn = await rejection(a.leave());
  assert.equal(notIn.code, ErrorCode.NOT_IN_ROOM);
  const room = roomName();
  await a.join({ roomId: room, createIfMissing: true });
  assert.equal((await rejection(a.join({ roomId: room }))).code, ErrorCode.ALREADY_IN_ROOM);
  const bad = await rejection(a.leave().then(() => a.join({ roomId: roomName(), createIfMissing: true, room: { tickRate: 100_000 } })));
  assert.equal(bad.code, ErrorCode.INVALID_ARGUMENT);
});

test("arguments the relay would refuse are caught before sending", async () => {
  const a = newClient({ url: relay.url });
  await a.connect();
  await assert.rejects(a.join({}), TypeError);
  await assert.rejects(a.join({ roomId: "x", create: true }), TypeError);
  assert.throws(() => a.send("x", { kind: -1 }), RangeError);
  assert.throws(() => a.send("x", { targets: [1.5] }), RangeError);
  const created = await a.join({ create: true });
  assert.match(created.roomId, /^[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$/, "a relay-made code");
});

test("requests before connect() and after close() fail clearly", async () => {
  const a = newClient({ url: relay.url });
  await assert.rejects(a.join({ roomId: "x" }), /call connect\(\) first/);
  await a.connect();
  await a.close();
  assert.equal(a.state, "closed");
  await assert.rejects(a.join({ roomId: "x" }), ConnectionClosedError);
  assert.equal(a.send("x"), false);
});

test("the browser entry needs a WebSocket where the platform has none", () => {
  const hasGlobal = typeof (globalThis as { WebSocket?: unknown }).WebSocket === "function";
  if (hasGlobal) {
    assert.ok(new BrowserEntryClient({ url: relay.url }));
  } else {
    assert.throws(() => new BrowserEntryClient({ url: relay.url }), /no WebSocket/);
  }
  assert.ok(new TickrelayClient({ url: relay.url }), "the Node entry brings ws");
});

test("authToken goes out in Join.auth_token, a function asked once per join", async () => {
  // The relay does not check tokens yet: look at what the client sends.
  const { fromBinary } = await import("@bufbuild/protobuf");
  const { ClientMessageSchema } = await import("../src/gen/tickrelay/v1/tickrelay_pb.js");
  const { nodeWebSocket } = await import("../src/node.js");
  const sent: string[] = [];
  const open = nodeWebSocket();
  let asked = 0;
  const a = newClient({
    url: relay.url,
    authToken: () => `token-${++asked}`,
    createWebSocket: (url, protocols) => {
      const ws = open(url, protocols);
      const send = ws.send.bind(ws);
      ws.send = (data: Uint8Array) => {
        const m = fromBinary(ClientMessageSchema, data);
        if (m.body.case === "join") sent.push(m.body.value.authToken);
        send(data);
      };
      return ws;
    },
  });
  await a.connect();
  const room = roomName();
  await a.join({ roomId: room, createIfMissing: true });
  await a.leave();
  await a.join({ roomId: room, createIfMissing: true, authToken: "explicit" });
  assert.deepEqual(sent, ["token-1", "explicit"]);
});
