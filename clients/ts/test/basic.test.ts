// Rooms, messages and presence against a real relay, directly and through a
// proxy that splits every write.
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { LeaveReason, RoomEventType, type Member, type TickrelayClient } from "../src/node.js";
import { eventually, startRelay, stopAll, type Relay } from "./helpers/relay.js";
import { closeClients, closeProxies, newClient, Recorder, roomName, text, transports } from "./helpers/clients.js";

let relay: Relay;
before(async () => {
  relay = await startRelay();
});
afterEach(closeClients);
after(async () => {
  await closeProxies();
  await stopAll();
});

for (const transport of transports) {
  describe(`over ${transport.name}`, () => {
    async function connected(metadata: Record<string, string> = {}): Promise<TickrelayClient & { meta: Record<string, string> }> {
      const c = newClient({ url: await transport.url(relay) });
      await c.connect();
      return Object.assign(c, { meta: metadata });
    }

    test("two clients join one room and exchange messages", async () => {
      const room = roomName();
      const a = await connected();
      const b = await connected();
      const ja = await a.join({ roomId: room, createIfMissing: true, metadata: { name: "ann" } });
      assert.equal(ja.roomId, room);
      assert.equal(ja.hostId, ja.playerId);
      assert.deepEqual(ja.members.map((m) => m.playerId), [ja.playerId]);
      const joinedSeen: Member[] = [];
      a.on("playerJoined", (m) => joinedSeen.push(m));
      const jb = await b.join({ roomId: room, metadata: { name: "bob" } });
      assert.deepEqual(jb.members.map((m) => m.metadata.name), ["ann", "bob"], "members oldest first, with metadata");
      assert.equal(jb.hostId, ja.playerId);
      assert.equal(b.isHost, false);
      await eventually(() => joinedSeen.length === 1, 10_000, "PLAYER_JOINED at ann");
      assert.equal(joinedSeen[0]!.playerId, jb.playerId);
      assert.equal(joinedSeen[0]!.metadata.name, "bob");
      assert.deepEqual(a.members.map((m) => m.playerId), [ja.playerId, jb.playerId]);

      const ra = new Recorder(a);
      const rb = new Recorder(b);
      assert.equal(a.send("hello from ann", { kind: 7 }), true);
      assert.equal(b.send(new Uint8Array([1, 2, 3]), { kind: 8 }), true);
      await rb.waitFor(1);
      await ra.waitFor(1);
      assert.equal(rb.deliveries[0]!.sender, ja.playerId);
      assert.equal(rb.deliveries[0]!.kind, 7);
      assert.equal(text(rb.deliveries[0]!.payload), "hello from ann");
      assert.deepEqual([...ra.deliveries[0]!.payload], [1, 2, 3]);
      assert.ok(rb.frames[0]!.tick >= jb.tick, "frame ticks follow the join's tick");
    });

    test("targets, echo and latest-only", async () => {
      const room = roomName();
      const [a, b, c] = [await connected(), await connected(), await connected()];
      // A slow room, so that a burst of sends lands in one tick.
      await a.join({ roomId: room, createIfMissing: true, room: { tickRate: 5 } });
      await b.join({ roomId: room });
      await c.join({ roomId: room });
      const [ra, rb, rc] = [new Recorder(a), new Recorder(b), new Recorder(c)];

      a.send("to c only", { kind: 1, targets: [c.playerId] });
      a.send("to all, echoed", { kind: 2, echo: true });
      await eventually(() => rc.deliveries.length >= 2 && ra.deliveries.length >= 1 && rb.deliveries.length >= 1, 10_000, "targeted and echoed deliveries");
      assert.deepEqual(rc.texts(), ["to c only", "to all, echoed"]);
      assert.deepEqual(rb.texts(), ["to all, echoed"]);
      assert.deepEqual(ra.texts(), ["to all, echoed"]);

      // 50 position updates in one burst: latest-only keeps the newest of the
      // tick; plain sends all arrive, in order.
      for (let i = 0; i < 50; i++) a.send(`pos ${i}`, { kind: 3, latestOnly: true });
      for (let i = 0; i < 50; i++) a.send(`seq ${i}`, { kind: 4 });
      await eventually(() => rb.texts(4).length === 50, 10_000, "50 plain sends");
      await eventually(() => rb.texts(3).at(-1) === "pos 49", 10_000, "the newest latest-only update");
      assert.deepEqual(rb.texts(4), Array.from({ length: 50 }, (_, i) => `seq ${i}`));
      const positions = rb.texts(3);
      assert.ok(positions.length < 50, `latest-only updates were conflated (got ${positions.length} of 50)`);
      const order = positions.map((p) => Number(p.split(" ")[1]));
      assert.deepEqual(order, [...order].sort((x, y) => x - y), "latest-only updates stay in send order");
    });

    test("presence and host change", async () => {
      const room = roomName();
      const [a, b, c] = [await connected(), await connected(), await connected()];
      const ja = await a.join({ roomId: room, createIfMissing: true });
      const jb = await b.join({ roomId: room });
      const jc = await c.join({ roomId: room });
      await eventually(() => b.members.length === 3, 10_000, "b sees three members");
      const left: [number, LeaveReason][] = [];
      const hosts: [number, number][] = [];
      b.on("playerLeft", (m, why) => left.push([m.playerId, why]));
      b.on("hostChanged", (now, before) => hosts.push([now, before]));
      const lists: number[][] = [];
      b.on("members", (ms) => lists.push(ms.map((m) => m.playerId)));

      await a.leave();
      assert.equal(a.roomId, "");
      await eventually(() => hosts.length === 1, 10_000, "HOST_CHANGED at b");
      assert.deepEqual(left, [[ja.playerId, LeaveReason.LEFT]]);
      assert.deepEqual(hosts, [[jb.playerId, ja.playerId]]);
      assert.equal(b.isHost, true);
      // c learns of the change in its own frame, which may reach it after b's.
      await eventually(() => c.hostId === jb.playerId, 10_000, "HOST_CHANGED at c");
      assert.deepEqual(lists.at(-1), [jb.playerId, jc.playerId]);

      await c.close();
      await eventually(() => left.length === 2, 10_000, "c's leave at b");
      assert.deepEqual(left[1], [jc.playerId, LeaveReason.LEFT], "close() leaves: the seat is not kept for a resume");
      assert.deepEqual(b.members.map((m) => m.playerId), [jb.playerId]);
    });

    test("PLAYER_JOINED is applied before the deliveries of its frame", async () => {
      const room = roomName();
      const a = await connected();
      const b = await connected();
      // 1 Hz: b's join and first send share a tick.
      await a.join({ roomId: room, createIfMissing: true, room: { tickRate: 1 } });
      let sameFrame = false;
      let unknownSender = false;
      a.on("frame", (f) => {
        for (const d of f.deliveries) if (!a.member(d.sender)) unknownSender = true;
        if (f.deliveries.length > 0 && f.events.some((e) => e.type === RoomEventType.PLAYER_JOINED && e.playerId === f.deliveries[0]!.sender)) {
          sameFrame = true;
        }
      });
      const rb = new Recorder(a);
      const joined = b.join({ roomId: room });
      await joined;
      b.send("first words");
      await rb.waitFor(1);
      assert.equal(unknownSender, false, "every sender was a member while its frame was handled");
      assert.equal(sameFrame, true, "the join and the first delivery shared a frame");
    });
  });
}
