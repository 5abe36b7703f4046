// LOCKSTEP rooms against a real relay, directly and through a proxy that
// splits every write: the same InputSets for everyone, lead figures, timing
// errors and DESYNC reports.
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, InputFlag, RoomMode, type InputSet, type TickrelayError } from "../src/node.js";
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

for (const transport of transports) {
  describe(`lockstep over ${transport.name}`, () => {
    test("every member gets the same InputSets, with leads; late inputs and desyncs are reported", async () => {
      const room = roomName("ls");
      const a = newClient({ url: await transport.url(relay) });
      const b = newClient({ url: await transport.url(relay) });
      await a.connect();
      await b.connect();
      // Listeners first: a joiner's log InputSets follow its Joined at once.
      const sets = new Map<string, Map<number, InputSet>>([["a", new Map()], ["b", new Map()]]);
      const errors: TickrelayError[] = [];
      const desyncs: [number, readonly number[]][] = [];
      for (const [name, c] of [["a", a], ["b", b]] as const) {
        c.on("inputSet", (s) => {
          sets.get(name)!.set(s.tick, s);
          const me = c.playerId;
          if (s.inputs.some((i) => i.playerId === me)) c.sendInput(s.tick + 3, new Uint8Array([me, s.tick & 0xff]));
        });
        c.on("desync", (tick, players) => desyncs.push([tick, players]));
      }
      a.on("error", (e) => errors.push(e));
      const ja = await a.join({ roomId: room, createIfMissing: true, room: { tickRate: 50, lockstep: { toleranceMs: 10 } } });
      assert.equal(ja.mode, RoomMode.LOCKSTEP);
      assert.equal(ja.lockstep?.firstTick, 1);
      assert.equal(ja.lockstep?.toleranceMs, 10);
      const jb = await b.join({ roomId: room });
      assert.equal(jb.lockstep?.firstTick, 1, "the log reaches back to tick 1");
      const start = jb.tick + 1;
      for (let t = start; t < start + 3; t++) {
        a.sendInput(t, new Uint8Array([ja.playerId, t & 0xff]));
        b.sendInput(t, new Uint8Array([jb.playerId, t & 0xff]));
      }
      const last = start + 30;
      await eventually(() => sets.get("a")!.has(last) && sets.get("b")!.has(last), 20_000, "30 ticks of InputSets");
      let client = 0;
      for (let t = start; t <= last; t++) {
        const sa = sets.get("a")!.get(t)!;
        const sb = sets.get("b")!.get(t)!;
        assert.deepEqual(sa.inputs, sb.inputs, `InputSet ${t}`);
        assert.deepEqual(sa.inputs.map((i) => i.playerId), [ja.playerId, jb.playerId]);
        client += sa.inputs.filter((i) => i.flag === InputFlag.CLIENT).length;
        // The first three inputs were sent just after the join, with no
        // margin: they may arrive after their tick's scheduled close yet
        // be taken (the room's worker closes ticks late on a loaded
        // machine), a lead of zero or below. The later ones are sent three
        // ticks ahead, so their lead is positive.
        if (sa.inputs[0]!.flag === InputFlag.CLIENT) {
          assert.ok(sa.leadUs !== undefined, `lead at ${t}`);
          if (t >= start + 3) assert.ok(sa.leadUs > 0, `lead at ${t}: ${sa.leadUs} µs`);
        }
      }
      assert.ok(client >= 40, `most inputs made their tick (${client} of 62)`);

      a.sendInput(start, new Uint8Array([1]));
      const refusal = () => errors.find((e) => e.inputTick === start);
      await eventually(() => refusal() !== undefined, 10_000, "INPUT_TOO_LATE");
      assert.equal(refusal()!.code, ErrorCode.INPUT_TOO_LATE);
      assert.equal(refusal()!.reason, "closed");
      assert.ok(refusal()!.inputLeadUs < 0);
      // b got every InputSet from tick 1: the log, then live ones.
      for (let t = 1; t <= last; t++) assert.ok(sets.get("b")!.has(t), `b has InputSet ${t}`);

      a.sendInput(0, new Uint8Array(), { checksumTick: last, checksum: 1n });
      b.sendInput(0, new Uint8Array(), { checksumTick: last, checksum: 2n });
      await eventually(() => desyncs.length > 0, 10_000, "DESYNC");
      assert.equal(desyncs[0]![0], last);
      assert.deepEqual([...desyncs[0]![1]].sort(), [ja.playerId, jb.playerId].sort());
    });
  });
}
