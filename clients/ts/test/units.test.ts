// Pure parts: backoff, the close-code table, the emitter.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, CLOSE_CAUSES, closeCauseOf, ErrorCode, mayReconnect, resolveReconnectOptions, ResumeFailure, resumeFailureName } from "../src/node.js";
import { Emitter } from "../src/emitter.js";

test("backoff: exponential, capped, jittered within its share", () => {
  const o = resolveReconnectOptions({ initialDelayMs: 100, maxDelayMs: 1_000, multiplier: 2, jitter: 0.5 });
  assert.deepEqual([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, o, () => 0)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([0, 1, 4].map((n) => backoffDelay(n, o, () => 0.999999)).map(Math.round), [50, 100, 500]);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(3, o);
    assert.ok(d > 400 && d <= 800, `${d}`);
  }
  assert.equal(resolveReconnectOptions(false).enabled, false);
  assert.equal(resolveReconnectOptions(undefined).maxAttempts, Infinity);
  assert.throws(() => resolveReconnectOptions({ jitter: 2 }), RangeError);
  assert.throws(() => resolveReconnectOptions({ initialDelayMs: 10, maxDelayMs: 5 }), RangeError);
});

test("mayReconnect is the relay's rule", () => {
  // The generated ranges come from proto/closes.MayReconnect itself (Go
  // test clients/ts/closesgen); here: that the TS side reads them right.
  for (const c of [1001, 1005, 1006, 1011, 1012, 1013, 1014, 4000, 4002, 4499]) assert.equal(mayReconnect(c), true, `${c}`);
  for (const c of [0, 1000, 1002, 1003, 1007, 1008, 1009, 1010, 1015, 3000, 3999, 4500, 4503, 4999, 5000]) assert.equal(mayReconnect(c), false, `${c}`);
  for (const c of CLOSE_CAUSES) assert.equal(mayReconnect(c.code), c.reconnect, c.name);
});

test("closeCauseOf tells causes that share a code apart by reason", () => {
  assert.equal(closeCauseOf(1001, "server draining: reconnect to resume")?.name, "draining");
  assert.equal(closeCauseOf(1001, "server shutting down")?.name, "going_away");
  assert.equal(closeCauseOf(1001, "something else"), undefined);
  assert.equal(closeCauseOf(4002, "server full")?.error, ErrorCode.SERVER_FULL);
  assert.equal(closeCauseOf(4503, "")?.name, "origin_refused", "a code of one cause needs no reason");
  assert.equal(closeCauseOf(1006, ""), undefined);
});

test("emitter: order, unsubscribe, once, and a throwing listener does not stop the others", () => {
  class E extends Emitter<{ x: (n: number) => void }> {
    fire(n: number) {
      this.emit("x", n);
    }
  }
  const e = new E();
  const got: string[] = [];
  const off = e.on("x", (n) => got.push(`a${n}`));
  e.once("x", (n) => got.push(`once${n}`));
  e.on("x", () => {
    throw new Error("listener bug (expected in this test)");
  });
  e.on("x", (n) => got.push(`b${n}`));
  const original = console.error;
  const g = globalThis as { reportError?: unknown };
  const saved = g.reportError;
  g.reportError = () => undefined;
  console.error = () => undefined;
  try {
    e.fire(1);
    off();
    e.fire(2);
  } finally {
    console.error = original;
    g.reportError = saved;
  }
  assert.deepEqual(got, ["a1", "once1", "b1", "b2"]);
});

test("resume failures by name", () => {
  assert.equal(resumeFailureName(ResumeFailure.SEAT_EXPIRED), "SEAT_EXPIRED");
  assert.equal(resumeFailureName(ResumeFailure.ROOM_GONE), "ROOM_GONE");
  assert.equal(resumeFailureName(99 as ResumeFailure), "ResumeFailure(99)");
});
