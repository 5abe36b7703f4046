// Takes demo/screenshot.png: two demo pages side by side (side-by-side.html,
// two iframes), each showing the other's dot, in headless Chromium against a
// relay and the demo's static server on loopback. `make demo-screenshot`.
import { join } from "node:path";
import { eventually, goBuild, launchChromium, Proc, repoRoot, startRelay } from "./procs.js";

const relayBin = goBuild(".", "tickrelay");
const serveBin = goBuild("./demo/serve", "demo-serve");
const relay = await startRelay(relayBin, []);
const serve = new Proc("demo-serve", serveBin, ["-listen", "127.0.0.1:0", "-dir", join(repoRoot, "demo/public"), "-relay", `ws://${relay.addr}/ws`]);
const url = (await serve.line(/url=(http:\/\/\S+)/))[1]!;
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.setViewportSize({ width: 1100, height: 440 });
  await page.goto(`${url}side-by-side.html`);
  const frames = () => page.frames().filter((f) => f !== page.mainFrame());
  await eventually(
    async () => {
      const fs = frames();
      if (fs.length !== 2) return false;
      const seen = await Promise.all(
        fs.map((f) => f.evaluate(() => (window as unknown as { tickrelayDemo?: { peers: Map<number, unknown> } }).tickrelayDemo?.peers.size ?? 0)),
      );
      return seen.every((n) => n === 1);
    },
    20_000,
    "both pages see each other",
  );
  // Let the dots travel apart along their paths before the picture.
  await page.waitForTimeout(1_500);
  const out = join(repoRoot, "demo/screenshot.png");
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await serve.stop();
  await relay.proc.stop();
}
