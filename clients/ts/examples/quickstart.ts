import { ConnectionClosedError, ErrorCode, TickrelayClient, TickrelayError } from "@tickrelay/client";

const client = new TickrelayClient({ url: process.env.TICKRELAY_URL ?? "ws://localhost:7600/ws" });

client.on("playerJoined", (m) => console.log(`${m.metadata.name ?? m.playerId} joined`));
client.on("playerLeft", (m) => console.log(`${m.metadata.name ?? m.playerId} left`));
client.on("hostChanged", (host) => console.log(`player ${host} is the host now`));
client.on("frame", (frame) => {
  for (const d of frame.deliveries) {
    const from = client.member(d.sender)?.metadata.name ?? d.sender;
    console.log(`tick ${frame.tick}: ${from} says ${new TextDecoder().decode(d.payload)}`);
  }
});
client.on("close", (info) => {
  if (info.willReconnect) console.log(`connection lost (${info.code} ${info.reason}); reconnecting`);
});

try {
  await client.connect();
  const room = await client.join({
    roomId: "lobby",
    createIfMissing: true,
    room: { tickRate: 20, maxPlayers: 8 },
    metadata: { name: process.env.PLAYER ?? "node" },
  });
  console.log(`joined ${room.roomId} as player ${room.playerId} with ${room.members.length - 1} others`);
} catch (err) {
  if (err instanceof TickrelayError && err.code === ErrorCode.ROOM_FULL) console.error("the lobby is full");
  else if (err instanceof ConnectionClosedError) console.error(`refused: ${err.close.code} ${err.close.reason}`);
  else console.error(err);
  process.exit(1);
}

// A state update 10 times a second: latestOnly keeps only the newest per tick.
let x = 0;
const timer = setInterval(() => {
  x += 1;
  client.send(JSON.stringify({ x, tick: Math.floor(client.estimatedServerTick()) }), { kind: 1, latestOnly: true });
}, 100);

process.on("SIGINT", () => {
  clearInterval(timer);
  void client.close().then(() => process.exit(0));
});
