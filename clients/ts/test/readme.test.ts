// The README's example is examples/quickstart.ts, compiled with the tests
// against the package's published entry; here it must match the README and
// run against a relay.
import { after, afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { eventually, startRelay, stopAll } from "./helpers/relay.js";
import { closeClients, newClient, Recorder, text } from "./helpers/clients.js";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "../..");
afterEach(closeClients);
after(stopAll);

test("the README shows examples/quickstart.ts as it is", () => {
  const readme = readFileSync(join(pkg, "README.md"), "utf8");
  const example = readFileSync(join(pkg, "examples/quickstart.ts"), "utf8");
  assert.ok(readme.includes("```ts\n" + example + "```\n"), "README.md's quickstart differs from examples/quickstart.ts");
});

test("the quickstart runs: it joins, sends, hears others and stops on SIGINT", async () => {
  const relay = await startRelay();
  const proc = spawn(process.execPath, [join(pkg, "build/examples/quickstart.js")], {
    env: { ...process.env, TICKRELAY_URL: relay.url, PLAYER: "quick" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout.on("data", (b: Buffer) => (out += b.toString()));
  proc.stderr.on("data", (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((res) => proc.on("exit", (code) => res(code)));
  try {
    await eventually(() => out.includes("joined lobby as player"), 15_000, "the example's join");
    const me = newClient({ url: relay.url });
    await me.connect();
    await me.join({ roomId: "lobby", metadata: { name: "tester" } });
    const r = new Recorder(me);
    await r.waitFor(2, "the example's updates");
    const update = JSON.parse(text(r.deliveries.at(-1)!.payload)) as { x: number; tick: number };
    assert.ok(update.x > 0 && update.tick > 0);
    me.send("hi");
    await eventually(() => out.includes("tester says hi"), 10_000, "the example hears us");
    assert.match(out, /tester joined/);
    proc.kill("SIGINT");
    assert.equal(await exited, 0, out);
  } finally {
    proc.kill("SIGKILL");
  }
});
