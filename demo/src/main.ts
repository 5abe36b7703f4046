// The tickrelay demo: every open page is a dot; move the mouse over the field
// to steer yours (it wanders by itself otherwise), and see the others move.
// Positions go out 20 times a second as latest-only updates; the page draws
// the newest position of each player, eased, on every animation frame.
import { ConnectionClosedError, TickrelayClient, TickrelayError, type CloseInfo } from "@tickrelay/client";

interface Dot {
  x: number;
  y: number;
  tx: number; // target, from the latest update
  ty: number;
  name: string;
}

const KIND_POSITION = 1;
const params = new URLSearchParams(location.search);
const roomId = params.get("room") ?? "demo";
const name = params.get("name") ?? `player-${Math.floor(Math.random() * 1000)}`;
const pinging = params.get("ping") !== "off";

const canvas = document.querySelector<HTMLCanvasElement>("#field")!;
const ctx = canvas.getContext("2d")!;
const statusEl = document.querySelector<HTMLElement>("#status")!;
const peersEl = document.querySelector<HTMLElement>("#peers")!;

const peers = new Map<number, Dot>();
const closes: { code: number; reason: string; willReconnect: boolean }[] = [];
const me: Dot = { x: 0.5, y: 0.5, tx: 0.5, ty: 0.5, name };
let steering = false;
let paused = false;
let status = "connecting";

async function relayUrl(): Promise<string> {
  const fromQuery = params.get("relay");
  if (fromQuery) return fromQuery;
  // `make demo` serves /config.json with the relay's address; behind a proxy
  // that serves the page and the relay on one origin there is none.
  try {
    const res = await fetch("config.json", { cache: "no-store" });
    if (res.ok) return ((await res.json()) as { relayUrl: string }).relayUrl;
  } catch {
    // Fall through.
  }
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

const client = new TickrelayClient({ url: relayUrl, clockSync: pinging ? {} : false });

function setStatus(s: string): void {
  status = s;
  render();
}

function describeClose(info: CloseInfo): string {
  const why = info.reason || (info.code === 1006 ? "connection lost" : "no reason given");
  return `closed ${info.code}: ${why}${info.willReconnect ? " — reconnecting" : ""}`;
}

client.on("state", (s) => {
  if (s === "open") setStatus(`in room ${client.roomId || "…"}`);
  else if (s === "reconnecting") setStatus("reconnecting…");
});
client.on("close", (info) => {
  closes.push({ code: info.code, reason: info.reason, willReconnect: info.willReconnect });
  peers.clear();
  setStatus(describeClose(info));
});
client.on("joined", (j) => {
  peers.clear();
  for (const m of j.members) if (m.playerId !== j.playerId) peers.set(m.playerId, newDot(m.metadata.name ?? `#${m.playerId}`));
  setStatus(`in room ${j.roomId}`);
});
client.on("playerJoined", (m) => peers.set(m.playerId, newDot(m.metadata.name ?? `#${m.playerId}`)));
client.on("playerLeft", (m) => peers.delete(m.playerId));
client.on("frame", (f) => {
  for (const d of f.deliveries) {
    if (d.kind !== KIND_POSITION) continue;
    const dot = peers.get(d.sender);
    if (!dot) continue;
    try {
      const p = JSON.parse(new TextDecoder().decode(d.payload)) as { x: number; y: number };
      dot.tx = clamp(p.x);
      dot.ty = clamp(p.y);
    } catch {
      // Not ours: ignore.
    }
  }
});

function newDot(label: string): Dot {
  return { x: 0.5, y: 0.5, tx: 0.5, ty: 0.5, name: label };
}

function clamp(v: number): number {
  return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0.5;
}

canvas.addEventListener("pointermove", (e) => {
  const r = canvas.getBoundingClientRect();
  me.tx = clamp((e.clientX - r.left) / r.width);
  me.ty = clamp((e.clientY - r.top) / r.height);
  steering = true;
});
canvas.addEventListener("pointerleave", () => (steering = false));

// 20 updates a second; latest-only, so a slow tick sends only the newest.
setInterval(() => {
  if (paused) return;
  if (!steering) {
    const t = performance.now() / 1000 + (client.playerId || 1) * 1.7;
    me.tx = 0.5 + 0.38 * Math.sin(t * 0.9);
    me.ty = 0.5 + 0.34 * Math.sin(t * 1.3 + 1);
  }
  if (client.roomId) client.send(JSON.stringify({ x: me.tx, y: me.ty }), { kind: KIND_POSITION, latestOnly: true });
}, 50);

function colour(id: number): string {
  return `hsl(${(id * 137.5) % 360} 70% 50%)`;
}

function draw(): void {
  const w = (canvas.width = canvas.clientWidth * devicePixelRatio);
  const h = (canvas.height = canvas.clientHeight * devicePixelRatio);
  ctx.clearRect(0, 0, w, h);
  const r = 12 * devicePixelRatio;
  const dots: [Dot, string, boolean][] = [...peers.entries()].map(([id, d]) => [d, colour(id), false]);
  dots.push([me, colour(client.playerId || 0), true]);
  for (const [d, c, mine] of dots) {
    d.x += (d.tx - d.x) * 0.25;
    d.y += (d.ty - d.y) * 0.25;
    ctx.beginPath();
    ctx.arc(d.x * w, d.y * h, mine ? r * 1.3 : r, 0, 2 * Math.PI);
    ctx.fillStyle = c;
    ctx.fill();
    if (mine) {
      ctx.lineWidth = 3 * devicePixelRatio;
      ctx.strokeStyle = "#111";
      ctx.stroke();
    }
    ctx.fillStyle = "#222";
    ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
    ctx.fillText(mine ? `${d.name} (you)` : d.name, d.x * w + r * 1.5, d.y * h + 4 * devicePixelRatio);
  }
  requestAnimationFrame(draw);
}

function render(): void {
  statusEl.textContent = status;
  const est = client.clockEstimate;
  peersEl.textContent =
    `player ${client.playerId || "–"}${client.isHost ? " (host)" : ""} · ${peers.size + (client.roomId ? 1 : 0)} in room` +
    (Number.isFinite(est.rttMs) ? ` · rtt ${est.rttMs.toFixed(1)} ms · tick ${Math.floor(client.estimatedServerTick())}` : "");
}
setInterval(render, 250);
requestAnimationFrame(draw);

// For the end-to-end test and for poking at it from the console.
Object.assign(window, {
  tickrelayDemo: {
    client,
    peers,
    closes,
    get status() {
      return status;
    },
    pause: () => (paused = true),
    resume: () => (paused = false),
  },
});

try {
  await client.connect();
  await client.join({ roomId, createIfMissing: true, room: { tickRate: 20 }, metadata: { name } });
} catch (err) {
  if (err instanceof ConnectionClosedError) setStatus(`refused: ${describeClose(err.close)}`);
  else if (err instanceof TickrelayError) setStatus(`join refused: ${err.codeName}`);
  else setStatus(`error: ${String(err)}`);
}
