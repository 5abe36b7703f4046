import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ClientMessageSchema,
  ErrorCode,
  LeaveReason,
  ResumeFailure,
  RoomEventType,
  ServerMessageSchema,
  type Error as PbError,
  type Frame as PbFrame,
  type Joined as PbJoined,
  type Member as PbMember,
  type RoomEvent as PbRoomEvent,
  type Resumed as PbResumed,
  type ServerMessage,
} from "./gen/tickrelay/v1/tickrelay_pb.js";
import { backoffDelay, resolveReconnectOptions, type ReconnectOptions, type ResolvedReconnectOptions } from "./backoff.js";
import { ClockSync, type ClockEstimate } from "./clock.js";
import { closeCauseOf, mayReconnect } from "./closes.js";
import { Emitter } from "./emitter.js";
import { ConnectionClosedError, RequestTimeoutError, TickrelayError, type CloseInfo } from "./errors.js";
import { OPEN, platformWebSocket, type WebSocketFactory, type WebSocketLike } from "./socket.js";
import type {
  ConnectionState,
  Delivery,
  Frame,
  JoinOptions,
  Joined,
  LeftInfo,
  Member,
  PingResult,
  ReconnectedInfo,
  ReconnectingInfo,
  ResumedInfo,
  ResyncInfo,
  RoomEvent,
  SendOptions,
  SessionStats,
} from "./types.js";

/** The WebSocket subprotocol the client offers. */
export const SUBPROTOCOL = "tickrelay.v1";

/** The client's events; add listeners with `client.on(name, listener)`. */
export interface ClientEvents {
  /** The connection state changed. */
  state: (state: ConnectionState) => void;
  /** A connection is up and the relay answered (after a reconnect: before the room is rejoined). */
  open: () => void;
  /** One frame of the room: deliveries and room events of one tick. */
  frame: (frame: Frame) => void;
  /** The client joined a room (your join, or a rejoin after a reconnect): the presence starts over from `joined.members`. */
  joined: (joined: Joined) => void;
  /** The client is no longer in its room. */
  left: (left: LeftInfo) => void;
  /** A player joined the room (applied before the frame that carries it). */
  playerJoined: (member: Member) => void;
  /** A player left the room (applied after the frame that carries it). */
  playerLeft: (member: Member, reason: LeaveReason) => void;
  /** A player's connection dropped and its seat is kept for it (relays with resume). */
  playerAway: (member: Member) => void;
  /** A player that was away resumed its seat. */
  playerBack: (member: Member) => void;
  /** The members changed (joins, leaves, away/back, a new room): the whole list, oldest first. */
  members: (members: readonly Member[]) => void;
  /** The host changed: the oldest member left. */
  hostChanged: (hostId: number, previousHostId: number) => void;
  /** The room's tick rate changed (0: immediate mode). */
  tickRateChanged: (tickRate: number) => void;
  /** An Error that answers no request of yours: a refused send, a rate limit, the Error before a close. */
  error: (error: TickrelayError) => void;
  /** A connection ended; `info.willReconnect` says whether the client is getting it back. */
  close: (info: CloseInfo) => void;
  /** A reconnect attempt is scheduled. */
  reconnecting: (info: ReconnectingInfo) => void;
  /** The connection is back (and the seat resumed or the room rejoined, when the client was in one). */
  reconnected: (info: ReconnectedInfo) => void;
  /**
   * After a reconnect the seat could not be taken back as it was: the
   * client holds a new seat (`info.joined`, a new player id when the old
   * seat expired) or the same seat without the frames it missed (TOO_OLD).
   * Rebuild the game's state from the room as it is now. Emitted after the
   * "joined" of the new seat and before its first frame.
   */
  resync: (info: ResyncInfo) => void;
}

/** Options of a TickrelayClient. Omitted fields mean the default in their comment. */
export interface ClientOptions {
  /**
   * The relay's WebSocket URL (`wss://game.example.com/ws`), or a function
   * giving it for each connection (e.g. to pick another node after a drain).
   */
  url: string | (() => string | Promise<string>);
  /**
   * Opens the WebSocket. Default: the platform's WebSocket (browsers, Node
   * 22+); the package's Node entry defaults to the `ws` package, and
   * `nodeWebSocket({ ca })` from it takes TLS options.
   */
  createWebSocket?: WebSocketFactory;
  /** An auth token sent with every join (Join.auth_token), or a function giving a fresh one. */
  authToken?: string | (() => string | Promise<string>);
  /** Reconnecting after a lost connection; false: never. See ReconnectOptions for the defaults. */
  reconnect?: ReconnectOptions | false;
  /** How long a join, leave or ping waits for its answer, ms. Default 10,000. */
  requestTimeoutMs?: number;
  /** How long one connection attempt may take, until the relay answered, ms. Default 10,000. */
  connectTimeoutMs?: number;
  /**
   * Clock sync: a Ping every intervalMs (default 2,000) after a burst of
   * `burst` (default 4) Pings 100 ms apart on each join; alpha and window
   * tune the estimate (see ClockSync). The Pongs also keep proxies that time
   * out silent tunnels from cutting a client that sends but receives nothing.
   * false: no periodic Pings (and no deadAfterMs).
   */
  clockSync?: { intervalMs?: number; burst?: number; alpha?: number; window?: number } | false;
  /**
   * A connection from which nothing at all arrived for this long while the
   * client was pinging is taken as lost (close 1006) and replaced, ms; 0: off.
   * Default 4 × the clock-sync interval, at least 5,000.
   */
  deadAfterMs?: number;
  /** How long close() waits for the relay's answer to its Close, ms. Default 2,000. */
  closeTimeoutMs?: number;
  /**
   * Resume the seat after a lost connection (docs/PROTOCOL.md, "Resume"),
   * when the relay keeps seats (Joined.resume_token): the missed frames are
   * replayed, each once, and unacknowledged sends re-sent. false: rejoin
   * the room as a new member instead. Default true.
   */
  resume?: boolean;
  /**
   * Sends kept for re-sending after a resume (the relay tells which it got),
   * and the most buffered while reconnecting (beyond it send() returns
   * false). Default 256.
   */
  resendInputs?: number;
  /** How often a client with nothing to send acknowledges the frames it holds, ms. Default 250. */
  ackIntervalMs?: number;
}

interface Pending {
  readonly what: string;
  readonly resolve: (m: ServerMessage, receivedAt: number) => void;
  readonly reject: (e: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** One WebSocket and what belongs to it. */
interface Connection {
  readonly ws: WebSocketLike;
  readonly pending: Map<number, Pending>;
  /** The relay answered the first Ping: the connection serves. */
  ready: boolean;
  /**
   * The session is on this connection (the seat resumed or rejoined after a
   * reconnect): sends and acks go out. Before it they wait, since a Resume
   * must be the connection's first request.
   */
  serving: boolean;
  ended: boolean;
  lastReceivedAt: number;
  /** The last unsolicited Error, kept to explain a close that follows it. */
  lastError: { error: TickrelayError; at: number } | undefined;
  timers: ReturnType<typeof setTimeout>[];
}

/** The seat the client holds (or held, while reconnecting) in a room. */
interface Seat {
  readonly join: JoinOptions;
  roomId: string;
  playerId: number;
  hostId: number;
  tickRate: number;
  immediate: boolean;
  maxPlayers: number;
  roomMetadata: Readonly<Record<string, string>>;
  members: Map<number, Member>;
  seatGraceMs: number;
  /** The highest Frame.seq received: what a Resume names and an ack acknowledges. */
  lastSeq: number;
  /** The highest Frame.seq acknowledged to the relay on the current connection. */
  ackSent: number;
  /** The token for the next Resume: Joined.resume_token, then each Resumed.new_token (empty: the relay keeps no seats). */
  resumeToken: Uint8Array;
  /** The latest Sends, kept until a Resumed says the relay got them. */
  inputs: PendingInput[];
  /** Of inputs, those queued while reconnecting. */
  offline: number;
  /** The Send.seq of the seat's first input (inputSeq + 1 when it began). */
  firstInputSeq: number;
}

/** One Send, kept to be re-sent after a resume. */
interface PendingInput {
  readonly seq: number;
  readonly payload: Uint8Array;
  readonly kind: number;
  readonly targets: number[];
  readonly echo: boolean;
  readonly latestOnly: boolean;
}

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

const CLOSE_NORMAL = 1000;
const CLOSE_ABNORMAL = 1006;
/** An Error this close to a Close explains it. */
const ERROR_BEFORE_CLOSE_MS = 2_000;
const BURST_SPACING_MS = 100;

/**
 * A connection to a tickrelay relay: join a room, send to its members,
 * receive its frames, follow its members, and estimate the relay's tick.
 *
 * It reconnects by itself after a lost connection when the close code allows
 * it (the relay's rule, `mayReconnect`), with jittered exponential backoff,
 * and rejoins the room it was in.
 *
 * All methods are called from one thread (JavaScript's); listeners run
 * synchronously when a message arrives and should not block.
 */
export class TickrelayClient extends Emitter<ClientEvents> {
  private readonly opts: ClientOptions;
  private readonly factory: WebSocketFactory;
  private readonly reconnectOpts: ResolvedReconnectOptions;
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly pingIntervalMs: number; // 0: off
  private readonly pingBurst: number;
  private readonly deadAfterMs: number;
  private readonly closeTimeoutMs: number;
  private readonly resumeEnabled: boolean;
  private readonly resendInputs: number;
  private readonly ackIntervalMs: number;
  private readonly clock: ClockSync;
  private readonly counters: { -readonly [K in keyof SessionStats]: SessionStats[K] } = {
    reconnects: 0,
    recovered: 0,
    resyncs: 0,
    framesReplayed: 0,
    duplicatesDropped: 0,
    inputsResent: 0,
    inputsLost: 0,
  };

  private currentState: ConnectionState = "idle";
  private conn: Connection | undefined;
  private seat: Seat | undefined;
  private nextRequestId = 0;
  /**
   * The last Send.seq given out. Never reset, not even for a new seat: the
   * relay drops a Send whose seq is not above the highest it accepted, and
   * a seat taken back after TOO_OLD keeps that mark.
   */
  private inputSeq = 0;
  private attempt = 0; // failed attempts since the last connection that served
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private connectWaiter: { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } | undefined;
  private openWaiters: Waiter[] = [];
  private lastClose: CloseInfo | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: ClientOptions) {
    super();
    this.opts = options;
    const factory = options.createWebSocket ?? platformWebSocket();
    if (!factory) {
      throw new TypeError(
        "tickrelay: this platform has no WebSocket: import the client from the package's Node entry (it uses the ws package), or pass createWebSocket",
      );
    }
    this.factory = factory;
    this.reconnectOpts = resolveReconnectOptions(options.reconnect);
    this.requestTimeoutMs = positive(options.requestTimeoutMs, 10_000, "requestTimeoutMs");
    this.connectTimeoutMs = positive(options.connectTimeoutMs, 10_000, "connectTimeoutMs");
    this.closeTimeoutMs = positive(options.closeTimeoutMs, 2_000, "closeTimeoutMs");
    this.resumeEnabled = options.resume ?? true;
    this.resendInputs = Math.floor(positive(options.resendInputs, 256, "resendInputs"));
    // Timers take at most 2³¹−1 ms (longer ones fire at once).
    this.ackIntervalMs = Math.min(positive(options.ackIntervalMs, 250, "ackIntervalMs"), 2 ** 31 - 1);
    const cs = options.clockSync;
    this.pingIntervalMs = cs === false ? 0 : positive(cs?.intervalMs, 2_000, "clockSync.intervalMs");
    this.pingBurst = cs === false ? 0 : Math.max(0, Math.floor(cs?.burst ?? 4));
    this.deadAfterMs =
      options.deadAfterMs !== undefined
        ? Math.max(0, options.deadAfterMs)
        : this.pingIntervalMs > 0
          ? Math.max(5_000, 4 * this.pingIntervalMs)
          : 0;
    const origin = performance.timeOrigin;
    this.clock = new ClockSync((mono) => origin + mono, cs === false ? {} : { alpha: cs?.alpha, window: cs?.window });
  }

  /** Where the client is (see ConnectionState). */
  get state(): ConnectionState {
    return this.currentState;
  }

  /** This player's id in its room, or 0 outside a room. */
  get playerId(): number {
    return this.seat?.playerId ?? 0;
  }

  /** The room's id, or "" outside a room. */
  get roomId(): string {
    return this.seat?.roomId ?? "";
  }

  /** The room's host (its oldest member), or 0 outside a room. */
  get hostId(): number {
    return this.seat?.hostId ?? 0;
  }

  /** True when this player is its room's host. */
  get isHost(): boolean {
    return this.seat !== undefined && this.seat.hostId === this.seat.playerId;
  }

  /** The room's tick rate (0 outside a room or in immediate mode). */
  get tickRate(): number {
    return this.seat?.tickRate ?? 0;
  }

  /** The room's members, oldest first (empty outside a room); kept up to date from the room's events. */
  get members(): readonly Member[] {
    return this.seat ? [...this.seat.members.values()] : [];
  }

  /** A member of the room by id. */
  member(playerId: number): Member | undefined {
    return this.seat?.members.get(playerId);
  }

  /** Bytes handed to the socket and not yet sent: skip optional updates while it grows. */
  get bufferedAmount(): number {
    return this.conn?.ws.bufferedAmount ?? 0;
  }

  /** What the client went through across reconnects: resumes, resyncs, replayed frames, re-sent inputs. */
  get stats(): SessionStats {
    return { ...this.counters };
  }

  /** How the last connection ended, if one did. */
  get lastCloseInfo(): CloseInfo | undefined {
    return this.lastClose;
  }

  /** The smoothed round-trip time and clock offset (NaN before the first Pong). */
  get clockEstimate(): ClockEstimate {
    return this.clock.estimate;
  }

  /** The relay's clock now, Unix ms: the local clock plus the smoothed offset. */
  serverTimeNow(): number {
    return this.clock.serverNow();
  }

  /**
   * The room's tick now on the relay, fractional: Math.floor of it is the
   * tick the relay is in. Use it to schedule inputs for a tick, or to place
   * received states on a common timeline. 0 outside a room; in immediate
   * rooms the last tick seen.
   */
  estimatedServerTick(): number {
    return this.seat ? this.clock.serverTick() : 0;
  }

  /**
   * Connects. Resolves once the relay answered (a WebSocket may open and be
   * closed at once, e.g. with 4503 for an Origin not on the relay's
   * allow-list: that rejects with a ConnectionClosedError saying so). Failed
   * attempts are retried as the reconnect options say; the promise rejects
   * when the client gives up. Calling it again returns the same promise.
   */
  connect(): Promise<void> {
    if (this.connectWaiter) return this.connectWaiter.promise;
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.connectWaiter = { promise, resolve, reject };
    if (this.currentState === "closed") {
      reject(new ConnectionClosedError(this.lastClose ?? localClose(CLOSE_NORMAL, "client closed", true), "client closed"));
    } else if (this.currentState === "open") {
      resolve();
    } else if (this.currentState === "idle") {
      this.setState("connecting");
      void this.openConnection();
    }
    return promise;
  }

  /**
   * Joins a room and resolves with it; a refusal rejects with a
   * TickrelayError (ROOM_NOT_FOUND, ROOM_FULL, ...) carrying the request id.
   * Requests made while the client (re)connects wait for the connection.
   */
  async join(o: JoinOptions): Promise<Joined> {
    if (!o.roomId && !o.create) {
      throw new TypeError("tickrelay: join: no roomId (set roomId, or create: true for a relay-made code)");
    }
    if (o.roomId && o.create) {
      throw new TypeError("tickrelay: join: create asks for a relay-made code: leave roomId empty");
    }
    const conn = await this.whenOpen(o.timeoutMs);
    return this.joinOn(conn, o);
  }

  /** Leaves the room; resolves on the relay's confirmation. Outside a room: a TickrelayError NOT_IN_ROOM. */
  async leave(o: { timeoutMs?: number } = {}): Promise<void> {
    const conn = await this.whenOpen(o.timeoutMs);
    const m = await this.request(conn, "leave", { case: "leave", value: {} }, o.timeoutMs, (answer) => {
      if (answer.body.case === "left" && this.seat) {
        const l = answer.body.value;
        this.leaveSeat({ roomId: l.roomId, reason: l.reason, message: l.message });
      }
    });
    if (m.body.case === "error") throw toError(m.body.value, m.requestId);
    if (m.body.case !== "left") throw new Error(`tickrelay: leave: unexpected answer ${m.body.case}`);
  }

  /**
   * Relays payload (bytes, or a string sent as UTF-8) to the room's other
   * members (or opts.targets). Not acknowledged: a refusal arrives as an
   * "error" event. In a room, every send is numbered (Send.seq), so that
   * after a resume the client re-sends what the relay did not get and the
   * relay applies each send once; while the client reconnects, sends are
   * queued (up to resendInputs) and go out once the seat is resumed.
   * Returns true when the message was handed to the socket or queued;
   * false when it was dropped: no connection serving and no seat to resume
   * (or the queue is full).
   */
  send(payload: Uint8Array | string, opts: SendOptions = {}): boolean {
    const conn = this.conn;
    const serving = conn !== undefined && conn.serving && !conn.ended && conn.ws.readyState === OPEN;
    const seat = this.seat;
    const queue = !serving && seat !== undefined && this.resumeEnabled && seat.resumeToken.length > 0 && !this.closing;
    if (!serving && !queue) return false;
    const kind = opts.kind ?? 0;
    if (!Number.isInteger(kind) || kind < 0 || kind > 0xffffffff) {
      throw new RangeError(`tickrelay: send: kind ${kind} is not a uint32`);
    }
    const targets = opts.targets ?? [];
    for (const t of targets) {
      if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) throw new RangeError(`tickrelay: send: target ${t} is not a player id`);
    }
    const bytes = typeof payload === "string" ? utf8.encode(payload) : payload;
    const echo = opts.echo ?? false;
    const latestOnly = opts.latestOnly ?? false;
    if (!seat) {
      this.write(conn!, 0, { case: "send", value: { payload: bytes, kind, targets: [...targets], echo, latestOnly } });
      return true;
    }
    if (!serving && seat.offline >= this.resendInputs) return false;
    // Copied: the caller may reuse its buffer before a re-send.
    const input: PendingInput = { seq: ++this.inputSeq, payload: bytes.slice(), kind, targets: [...targets], echo, latestOnly };
    if (seat.inputs.length >= this.resendInputs) seat.inputs.shift(); // surely delivered, or beyond help
    seat.inputs.push(input);
    if (!serving) {
      seat.offline++;
      return true;
    }
    // A write into a connection that is going keeps the input for the resume.
    this.writeInput(conn!, input);
    return true;
  }

  private writeInput(conn: Connection, i: PendingInput): void {
    this.write(conn, 0, {
      case: "send",
      value: { payload: i.payload, kind: i.kind, targets: i.targets, echo: i.echo, latestOnly: i.latestOnly, seq: BigInt(i.seq) },
    });
  }

  /** Measures one round trip (and feeds the clock estimate). */
  async ping(o: { timeoutMs?: number } = {}): Promise<PingResult> {
    const conn = await this.whenOpen(o.timeoutMs);
    return this.pingOn(conn, o.timeoutMs);
  }

  /**
   * Closes for good: leaves the room (the seat is not kept for a resume),
   * sends a Close (1000), waits up to closeTimeoutMs for the
   * relay's answer, and stops reconnecting. Pending requests reject with a
   * ConnectionClosedError. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = new Promise<void>((resolve) => {
      if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      const conn = this.conn;
      if (!conn || conn.ended) {
        this.finish(localClose(CLOSE_NORMAL, "client closed", true));
        resolve();
        return;
      }
      // The state turns "closed" once the Close handshake is done (onclose),
      // or when the relay does not answer in time.
      const off = this.on("state", (s) => {
        if (s === "closed") {
          off();
          resolve();
        }
      });
      conn.timers.push(setTimeout(() => this.connectionEnded(conn, CLOSE_ABNORMAL, "closed by client before the relay answered", false), this.closeTimeoutMs));
      try {
        // A Close alone keeps the seat for a Resume (the others see the
        // player away for the seat grace): leave first, for good.
        if (this.seat && conn.serving && conn.ws.readyState === OPEN) this.write(conn, 0, { case: "leave", value: {} });
        conn.ws.close(CLOSE_NORMAL, "");
      } catch {
        this.connectionEnded(conn, CLOSE_ABNORMAL, "closed by client", false);
      }
    });
    return this.closing;
  }

  // --- connections -------------------------------------------------------

  private setState(s: ConnectionState): void {
    if (this.currentState === s) return;
    this.currentState = s;
    if (s === "open") {
      const ws = this.openWaiters;
      this.openWaiters = [];
      for (const w of ws) w.resolve();
    }
    this.emit("state", s);
  }

  private async openConnection(): Promise<void> {
    let url: string;
    try {
      url = typeof this.opts.url === "function" ? await this.opts.url() : this.opts.url;
    } catch (err) {
      this.attemptFailed(CLOSE_ABNORMAL, `url: ${describe(err)}`);
      return;
    }
    if (this.closing || this.currentState === "closed") return;
    let ws: WebSocketLike;
    try {
      ws = this.factory(url, [SUBPROTOCOL]);
    } catch (err) {
      // A malformed URL: retrying cannot help.
      this.reconnectTimer = undefined;
      const info = { ...this.closeInfo(CLOSE_ABNORMAL, `cannot open ${url}: ${describe(err)}`, undefined), willReconnect: false };
      this.lastClose = info;
      this.emit("close", info);
      this.finish(info);
      return;
    }
    ws.binaryType = "arraybuffer";
    const conn: Connection = {
      ws,
      pending: new Map(),
      ready: false,
      serving: false,
      ended: false,
      lastReceivedAt: performance.now(),
      lastError: undefined,
      timers: [],
    };
    this.conn = conn;
    conn.timers.push(
      setTimeout(() => {
        if (!conn.ready) this.abandon(conn, `no answer from the relay within ${this.connectTimeoutMs} ms of connecting`);
      }, this.connectTimeoutMs),
    );
    ws.onopen = () => {
      if (conn.ended) return;
      void this.connectionOpened(conn);
    };
    ws.onmessage = (ev: { data: unknown }) => {
      if (!conn.ended) this.received(conn, ev.data);
    };
    ws.onclose = (ev: { code: number; reason: string }) => {
      this.connectionEnded(conn, ev.code, ev.reason, false);
    };
    ws.onerror = () => {
      // Always followed by close, which says more.
    };
  }

  private async connectionOpened(conn: Connection): Promise<void> {
    try {
      // The first Pong proves the relay serves this connection: a refused
      // one (Origin, connection limit) is closed without reading it.
      await this.pingOn(conn, this.connectTimeoutMs);
    } catch {
      return; // the connection ended: handled there
    }
    if (conn.ended) return;
    conn.ready = true;
    const attempts = this.attempt;
    this.attempt = 0;
    this.startPinging(conn);
    this.startAcking(conn);
    this.emit("open");
    const reconnected = this.currentState === "reconnecting";
    let info: ReconnectedInfo | undefined;
    if (reconnected) {
      try {
        info = await this.restoreSession(conn, attempts);
      } catch {
        return; // the connection ended while resuming or rejoining: handled there
      }
      this.counters.reconnects++;
    }
    if (conn.ended) return;
    conn.serving = true;
    this.setState("open");
    if (this.connectWaiter) this.connectWaiter.resolve();
    if (info) this.emit("reconnected", info);
  }

  /**
   * Gets the session back on a new connection: with a seat's resume token,
   * Resume it (the relay replays the frames after lastSeq, and the client
   * re-sends the inputs the relay lacks); when the seat is gone and the
   * relay seated the player anew, resync from that seat; otherwise (no
   * token, the room gone) join the room again.
   */
  private async restoreSession(conn: Connection, attempts: number): Promise<ReconnectedInfo> {
    const seat = this.seat;
    if (!seat) return { attempts, rejoined: undefined, rejoinError: undefined, resumed: undefined };
    let resumed: ResumedInfo | undefined;
    let resyncedTo: Joined | undefined;
    if (this.resumeEnabled && seat.resumeToken.length > 0) {
      let m: ServerMessage;
      try {
        m = await this.request(
          conn,
          "resume",
          {
            case: "resume",
            value: { roomId: seat.roomId, playerId: seat.playerId, token: seat.resumeToken, lastSeq: BigInt(seat.lastSeq) },
          },
          undefined,
          (answer) => {
            // Synchronously: the replayed frames follow at once.
            if (answer.body.case === "resumed" && !conn.ended) [resumed, resyncedTo] = this.applyResumed(conn, seat, answer.body.value);
          },
        );
      } catch (err) {
        // No answer in time: this connection is no good, try another (the
        // seat waits for its grace).
        this.abandon(conn, `resume: ${describe(err)}`);
        throw err;
      }
      if (m.body.case === "error") {
        const error = toError(m.body.value, m.requestId);
        if (error.retryAfterMs > 0) {
          // Refused for now (rate limits): the next attempt waits as told.
          conn.lastError = { error, at: performance.now() };
          this.abandon(conn, `resume refused: ${error.message}`);
          throw error;
        }
        // A relay that cannot resume (an older one): rejoin below.
        resumed = { recovered: false, failure: ResumeFailure.UNSPECIFIED, replayed: 0, inputsResent: 0, inputsLost: 0 };
      } else if (m.body.case !== "resumed" || !resumed) {
        throw new Error(`tickrelay: resume: unexpected answer ${m.body.case}`);
      }
      if (resumed.recovered) return { attempts, rejoined: undefined, rejoinError: undefined, resumed };
      if (resyncedTo) return { attempts, rejoined: resyncedTo, rejoinError: undefined, resumed };
    }
    const again: JoinOptions = {
      ...seat.join,
      roomId: seat.roomId,
      create: false,
      // A room this client created (even with a relay-made code) is made
      // again under the same id if the relay lost it, so that its other
      // members find it.
      createIfMissing: seat.join.createIfMissing || seat.join.create,
    };
    try {
      const joined = await this.joinOn(conn, again);
      this.dropInputs(seat, resumed);
      if (resumed) this.resynced(resumed.failure, seat, joined);
      return { attempts, rejoined: joined, rejoinError: undefined, resumed };
    } catch (err) {
      if (conn.ended) throw err;
      this.dropInputs(seat, resumed);
      if (this.seat === seat) this.leaveSeat({ roomId: seat.roomId, reason: LeaveReason.DISCONNECTED, message: describe(err) });
      return { attempts, rejoined: undefined, rejoinError: err instanceof Error ? err : new Error(String(err)), resumed };
    }
  }

  /**
   * Applies a Resumed as it arrives, before the frames replayed after it:
   * a recovered seat continues (re-sending the inputs the relay lacks,
   * ahead of any new send); a snapshot is a new seat to resync from.
   */
  private applyResumed(conn: Connection, seat: Seat, r: PbResumed): [ResumedInfo, Joined | undefined] {
    if (r.recovered) {
      seat.resumeToken = r.newToken;
      seat.ackSent = seat.lastSeq; // the Resume named it
      const from = Number(r.replayFrom);
      const to = Number(r.replayTo);
      const replayed = to >= from ? to - from + 1 : 0;
      const inputAck = Number(r.inputAck);
      seat.inputs = seat.inputs.filter((i) => i.seq > inputAck);
      // Kept inputs start right after inputAck unless older ones were
      // pushed out of the buffer (those are lost); numbers given out before
      // this seat began are not its inputs.
      const floor = Math.max(inputAck, seat.firstInputSeq - 1);
      const lost = Math.max(0, (seat.inputs.length > 0 ? seat.inputs[0]!.seq - 1 : this.inputSeq) - floor);
      seat.offline = 0;
      conn.serving = true;
      for (const i of seat.inputs) this.writeInput(conn, i);
      this.counters.recovered++;
      this.counters.framesReplayed += replayed;
      this.counters.inputsResent += seat.inputs.length;
      this.counters.inputsLost += lost;
      return [{ recovered: true, failure: r.failure, replayed, inputsResent: seat.inputs.length, inputsLost: lost }, undefined];
    }
    const info: ResumedInfo = { recovered: false, failure: r.failure, replayed: 0, inputsResent: 0, inputsLost: seat.inputs.length };
    if (!r.snapshot) return [info, undefined];
    this.counters.inputsLost += seat.inputs.length;
    conn.serving = true;
    const joined = this.enterSeat(conn, seat.join, r.snapshot);
    this.resynced(r.failure, seat, joined);
    return [info, joined];
  }

  /** The inputs of a seat that was not recovered are moot. */
  private dropInputs(seat: Seat, resumed: ResumedInfo | undefined): void {
    if (resumed) this.counters.inputsLost += seat.inputs.length;
    seat.inputs = [];
    seat.offline = 0;
  }

  private resynced(reason: ResumeFailure, previous: Seat, joined: Joined): void {
    this.counters.resyncs++;
    this.emit("resync", { reason, joined, previousPlayerId: previous.playerId });
  }

  /** Drops a connection that stopped answering, without waiting for its Close handshake. */
  private abandon(conn: Connection, reason: string): void {
    if (conn.ended) return;
    this.connectionEnded(conn, CLOSE_ABNORMAL, reason, true);
  }

  private connectionEnded(conn: Connection, code: number, reason: string, abandoned: boolean): void {
    if (conn.ended) return;
    conn.ended = true;
    for (const t of conn.timers) clearTimeout(t);
    conn.ws.onopen = conn.ws.onmessage = conn.ws.onclose = conn.ws.onerror = null;
    if (abandoned) {
      try {
        conn.ws.close(CLOSE_NORMAL, "");
      } catch {
        // Already closing.
      }
    }
    const err = conn.lastError && performance.now() - conn.lastError.at <= ERROR_BEFORE_CLOSE_MS ? conn.lastError.error : undefined;
    const info = this.closeInfo(code, reason, err);
    const closed = new ConnectionClosedError(info);
    for (const p of conn.pending.values()) {
      clearTimeout(p.timer);
      p.reject(closed);
    }
    conn.pending.clear();
    if (this.conn === conn) this.conn = undefined;
    this.afterClose(info);
  }

  /** A connection could not even be attempted (the url function failed). */
  private attemptFailed(code: number, reason: string): void {
    this.afterClose(this.closeInfo(code, reason, undefined));
  }

  private closeInfo(code: number, reason: string, error: TickrelayError | undefined): CloseInfo {
    const byClient = this.closing !== undefined;
    const may = mayReconnect(code);
    const r = this.reconnectOpts;
    return {
      code,
      reason,
      cause: closeCauseOf(code, reason),
      error,
      mayReconnect: may,
      willReconnect: !byClient && may && r.enabled && this.attempt < r.maxAttempts,
      byClient,
    };
  }

  private afterClose(info: CloseInfo): void {
    this.lastClose = info;
    this.emit("close", info);
    if (info.willReconnect && !this.closing) {
      this.scheduleReconnect(info);
    } else {
      this.finish(info);
    }
  }

  private scheduleReconnect(info: CloseInfo): void {
    const delay = Math.max(backoffDelay(this.attempt, this.reconnectOpts), info.error?.retryAfterMs ?? 0);
    this.attempt++;
    this.setState(this.currentState === "connecting" ? "connecting" : "reconnecting");
    this.emit("reconnecting", { attempt: this.attempt, delayMs: delay, close: info });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.closing) void this.openConnection();
    }, delay);
  }

  /** The client is closed for good. */
  private finish(info: CloseInfo): void {
    if (this.currentState === "closed") return;
    this.lastClose = info;
    const seat = this.seat;
    if (seat) this.leaveSeat({ roomId: seat.roomId, reason: LeaveReason.DISCONNECTED, message: info.reason });
    const err = new ConnectionClosedError(info, info.byClient ? "client closed" : "connection closed");
    if (this.connectWaiter) {
      this.connectWaiter.reject(err);
      // A rejected connect() nobody awaits must not be an unhandled rejection.
      this.connectWaiter.promise.catch(() => undefined);
    }
    const ws = this.openWaiters;
    this.openWaiters = [];
    for (const w of ws) w.reject(err);
    this.setState("closed");
  }

  /** The connection, once it serves; waits while the client (re)connects. */
  private whenOpen(timeoutMs?: number): Promise<Connection> {
    const conn = this.conn;
    if (this.currentState === "open" && conn && conn.ready && !conn.ended) return Promise.resolve(conn);
    if (this.currentState === "closed" || this.closing) {
      return Promise.reject(new ConnectionClosedError(this.lastClose ?? localClose(CLOSE_NORMAL, "client closed", true), "client closed"));
    }
    if (this.currentState === "idle") {
      return Promise.reject(new Error("tickrelay: not connected: call connect() first"));
    }
    const ms = timeoutMs ?? this.requestTimeoutMs;
    return new Promise<Connection>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: () => {
          clearTimeout(timer);
          const c = this.conn;
          if (c) resolve(c);
          else reject(new ConnectionClosedError(this.lastClose ?? localClose(CLOSE_ABNORMAL, "connection lost", false)));
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.openWaiters = this.openWaiters.filter((w) => w !== waiter);
        reject(new RequestTimeoutError("waiting for the connection", 0, ms));
      }, ms);
      this.openWaiters.push(waiter);
    });
  }

  // --- requests ----------------------------------------------------------

  private async joinOn(conn: Connection, o: JoinOptions): Promise<Joined> {
    const token = o.authToken ?? (typeof this.opts.authToken === "function" ? await this.opts.authToken() : this.opts.authToken);
    const ro = o.room;
    let joined: Joined | undefined;
    const m = await this.request(
      conn,
      "join",
      {
        case: "join",
        value: {
          roomId: o.roomId ?? "",
          createIfMissing: o.createIfMissing ?? false,
          options: ro
            ? { maxPlayers: ro.maxPlayers ?? 0, tickRate: ro.tickRate ?? 0, immediate: ro.immediate ?? false, metadata: ro.metadata ?? {} }
            : undefined,
          playerMetadata: o.metadata ?? {},
          authToken: token ?? "",
        },
      },
      o.timeoutMs,
      (answer) => {
        if (answer.body.case === "joined" && !conn.ended) joined = this.enterSeat(conn, o, answer.body.value);
      },
    );
    if (m.body.case === "error") throw toError(m.body.value, m.requestId);
    if (m.body.case !== "joined" || !joined) throw new Error(`tickrelay: join: unexpected answer ${m.body.case}`);
    return joined;
  }

  private async pingOn(conn: Connection, timeoutMs?: number): Promise<PingResult> {
    let receivedAt = 0;
    const m = await this.request(conn, "ping", { case: "ping", value: { clientTime: BigInt(Math.round(performance.now() * 1000)) } }, timeoutMs, (_m, t) => {
      receivedAt = t;
    });
    if (m.body.case === "error") throw toError(m.body.value, m.requestId);
    if (m.body.case !== "pong") throw new Error(`tickrelay: ping: unexpected answer ${m.body.case}`);
    const pong = m.body.value;
    const sentAt = Number(pong.clientTime) / 1000;
    const serverTime = unixNanosToMs(pong.serverTime);
    const sample = { sentAt, receivedAt, serverTime, tick: Number(pong.tick), tickRate: pong.tickRate };
    // Only Pongs of this client's current room describe its schedule.
    if (this.seat && sample.tickRate === this.seat.tickRate && sample.tick > 0) {
      this.clock.add(sample);
    } else {
      this.clock.add({ ...sample, tickRate: 0, tick: 0 });
      if (this.seat) this.clock.resetSchedule(this.seat.tickRate);
    }
    return { rttMs: receivedAt - sentAt, serverTime, tick: sample.tick, tickRate: sample.tickRate };
  }

  private request(
    conn: Connection,
    what: string,
    body: MessageInitShape<typeof ClientMessageSchema>["body"],
    timeoutMs?: number,
    onReceived?: (m: ServerMessage, receivedAt: number) => void,
  ): Promise<ServerMessage> {
    if (conn.ended) return Promise.reject(new ConnectionClosedError(this.lastClose ?? localClose(CLOSE_ABNORMAL, "connection lost", false)));
    const id = this.newRequestId();
    const ms = timeoutMs ?? this.requestTimeoutMs;
    return new Promise<ServerMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.pending.delete(id);
        reject(new RequestTimeoutError(what, id, ms));
      }, ms);
      conn.pending.set(id, {
        what,
        resolve: (m, at) => {
          // Synchronously, before the next message is handled: a Joined must
          // set up the seat before the room's first Frame arrives.
          onReceived?.(m, at);
          resolve(m);
        },
        reject,
        timer,
      });
      try {
        this.write(conn, id, body);
      } catch (err) {
        clearTimeout(timer);
        conn.pending.delete(id);
        reject(err);
      }
    });
  }

  private newRequestId(): number {
    this.nextRequestId = (this.nextRequestId + 1) >>> 0;
    if (this.nextRequestId === 0) this.nextRequestId = 1; // 0 means "no answer wanted"
    return this.nextRequestId;
  }

  private write(conn: Connection, requestId: number, body: MessageInitShape<typeof ClientMessageSchema>["body"]): void {
    let ack = 0n;
    const seat = this.seat;
    if (seat && conn.serving && seat.lastSeq > seat.ackSent) {
      // Piggybacked: the relay can let go of the frames this client holds.
      ack = BigInt(seat.lastSeq);
      seat.ackSent = seat.lastSeq;
    }
    const msg = create(ClientMessageSchema, { requestId, body, ack });
    conn.ws.send(toBinary(ClientMessageSchema, msg));
  }

  // --- receiving ---------------------------------------------------------

  private received(conn: Connection, data: unknown): void {
    const now = performance.now();
    conn.lastReceivedAt = now;
    if (!(data instanceof ArrayBuffer)) {
      // The relay sends binary messages only; anything else is a broken peer.
      this.protocolFailure(conn, 1003, "text message from the relay");
      return;
    }
    let m: ServerMessage;
    try {
      m = fromBinary(ServerMessageSchema, new Uint8Array(data));
    } catch {
      this.protocolFailure(conn, 1007, "undecodable message from the relay");
      return;
    }
    if (m.body.case === "frame") {
      this.handleFrame(m.body.value);
      return;
    }
    if (m.requestId !== 0) {
      const p = conn.pending.get(m.requestId);
      if (p) {
        conn.pending.delete(m.requestId);
        clearTimeout(p.timer);
        p.resolve(m, now);
        return;
      }
    }
    switch (m.body.case) {
      case "error": {
        const error = toError(m.body.value, m.requestId);
        conn.lastError = { error, at: now };
        this.emit("error", error);
        return;
      }
      case "left": {
        const l = m.body.value;
        if (this.seat) this.leaveSeat({ roomId: l.roomId, reason: l.reason, message: l.message });
        return;
      }
      default:
      // Answers to requests that timed out are dropped.
    }
  }

  private protocolFailure(conn: Connection, code: number, reason: string): void {
    try {
      conn.ws.close(code, reason);
    } catch {
      // Closing already.
    }
    this.connectionEnded(conn, code, reason, true);
  }

  private enterSeat(conn: Connection, o: JoinOptions, j: PbJoined): Joined {
    const joined = toJoined(j);
    const { timeoutMs: _t, ...join } = o;
    void _t;
    this.seat = {
      join,
      roomId: joined.roomId,
      playerId: joined.playerId,
      hostId: joined.hostId,
      tickRate: joined.tickRate,
      immediate: joined.immediate,
      maxPlayers: joined.maxPlayers,
      roomMetadata: joined.roomMetadata,
      members: new Map(joined.members.map((m) => [m.playerId, m])),
      seatGraceMs: joined.seatGraceMs,
      lastSeq: 0,
      ackSent: 0,
      resumeToken: j.resumeToken,
      inputs: [],
      offline: 0,
      firstInputSeq: this.inputSeq + 1,
    };
    this.clock.resetSchedule(joined.tickRate, joined.tick);
    this.burstPings(conn);
    this.emit("joined", joined);
    this.emit("members", this.members);
    return joined;
  }

  private leaveSeat(l: LeftInfo): void {
    this.seat = undefined;
    this.clock.resetSchedule(0);
    this.emit("left", l);
    this.emit("members", []);
  }

  private handleFrame(f: PbFrame): void {
    const seat = this.seat;
    const frame: Frame = {
      tick: Number(f.tick),
      seq: Number(f.seq),
      deliveries: f.deliveries.map((d): Delivery => ({ sender: d.sender, kind: d.kind, payload: d.payload })),
      events: f.events.map(toRoomEvent),
    };
    if (!seat) {
      this.emit("frame", frame);
      return;
    }
    if (frame.seq !== 0) {
      if (frame.seq <= seat.lastSeq) {
        // Had already (a replay overlapping what arrived): each frame once.
        this.counters.duplicatesDropped++;
        return;
      }
      seat.lastSeq = frame.seq;
    }
    if (seat.tickRate === 0) this.clock.observeTick(frame.tick);
    let changed = false;
    // PLAYER_JOINED before the deliveries (PROTOCOL.md, "Events vs deliveries").
    for (const ev of frame.events) {
      if (ev.type === RoomEventType.PLAYER_JOINED && !seat.members.has(ev.playerId)) {
        const m: Member = { playerId: ev.playerId, metadata: ev.metadata, userId: ev.userId, away: false };
        seat.members.set(m.playerId, m);
        changed = true;
        this.emit("playerJoined", m);
      }
    }
    this.emit("frame", frame);
    if (this.seat !== seat) return; // a listener left the room
    for (const ev of frame.events) {
      switch (ev.type) {
        case RoomEventType.PLAYER_LEFT: {
          const m = seat.members.get(ev.playerId);
          if (m) {
            seat.members.delete(ev.playerId);
            changed = true;
            this.emit("playerLeft", m, ev.reason);
          }
          break;
        }
        case RoomEventType.HOST_CHANGED: {
          const previous = seat.hostId;
          if (previous !== ev.playerId) {
            seat.hostId = ev.playerId;
            this.emit("hostChanged", ev.playerId, previous);
          }
          break;
        }
        case RoomEventType.TICK_RATE_CHANGED:
          seat.tickRate = ev.tickRate;
          seat.immediate = ev.tickRate === 0;
          this.clock.resetSchedule(ev.tickRate, frame.tick);
          this.emit("tickRateChanged", ev.tickRate);
          break;
        case RoomEventType.PLAYER_AWAY:
        case RoomEventType.PLAYER_BACK: {
          const m = seat.members.get(ev.playerId);
          const away = ev.type === RoomEventType.PLAYER_AWAY;
          if (m && m.away !== away) {
            const next = { ...m, away };
            seat.members.set(m.playerId, next);
            changed = true;
            this.emit(away ? "playerAway" : "playerBack", next);
          }
          break;
        }
        default:
      }
    }
    if (changed && this.seat === seat) this.emit("members", this.members);
  }

  // --- pings -------------------------------------------------------------

  private startPinging(conn: Connection): void {
    if (this.pingIntervalMs <= 0) return;
    const tick = () => {
      if (conn.ended) return;
      if (this.deadAfterMs > 0 && performance.now() - conn.lastReceivedAt > this.deadAfterMs) {
        this.abandon(conn, `nothing from the relay within ${this.deadAfterMs} ms`);
        return;
      }
      this.pingOn(conn).catch(() => undefined);
      conn.timers.push(setTimeout(tick, this.pingIntervalMs));
    };
    conn.timers.push(setTimeout(tick, this.pingIntervalMs));
  }

  /** Tells the relay, while the client sends nothing, which frames it holds, so that the relay can drop them. */
  private startAcking(conn: Connection): void {
    // One interval for the connection's life (clearTimeout ends it too).
    const timer = setInterval(() => {
      const seat = this.seat;
      if (conn.ended || !seat || !conn.serving || seat.lastSeq <= seat.ackSent || conn.ws.readyState !== OPEN) return;
      try {
        this.write(conn, 0, { case: undefined });
      } catch {
        // The connection is going: its close says more.
      }
    }, this.ackIntervalMs);
    conn.timers.push(timer);
  }

  private burstPings(conn: Connection): void {
    for (let i = 1; i <= this.pingBurst; i++) {
      conn.timers.push(
        setTimeout(() => {
          if (!conn.ended) this.pingOn(conn).catch(() => undefined);
        }, i * BURST_SPACING_MS),
      );
    }
  }
}

const utf8 = new TextEncoder();

function positive(v: number | undefined, def: number, name: string): number {
  if (v === undefined) return def;
  if (!(v > 0)) throw new RangeError(`tickrelay: ${name} must be positive`);
  return v;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function localClose(code: number, reason: string, byClient: boolean): CloseInfo {
  return { code, reason, cause: undefined, error: undefined, mayReconnect: mayReconnect(code), willReconnect: false, byClient };
}

/** Pong.server_time (Unix ns, int64) as fractional Unix ms, exact to the microsecond. */
function unixNanosToMs(ns: bigint): number {
  return Number(ns / 1000n) / 1000;
}

function toError(e: PbError, requestId: number): TickrelayError {
  return new TickrelayError({
    code: e.code,
    requestId,
    retryAfterMs: e.retryAfterMs,
    reason: e.reason,
    detail: e.message,
    tick: Number(e.tick),
  });
}

function toMember(m: PbMember): Member {
  return { playerId: m.playerId, metadata: { ...m.metadata }, userId: m.userId, away: m.away };
}

function toJoined(j: PbJoined): Joined {
  return {
    roomId: j.roomId,
    playerId: j.playerId,
    hostId: j.hostId,
    tickRate: j.tickRate,
    tick: Number(j.tick),
    members: j.members.map(toMember),
    maxPlayers: j.maxPlayers,
    roomMetadata: { ...j.roomMetadata },
    immediate: j.immediate,
    seatGraceMs: j.seatGraceMs,
  };
}

function toRoomEvent(e: PbRoomEvent): RoomEvent {
  return {
    type: e.type,
    playerId: e.playerId,
    metadata: { ...e.metadata },
    reason: e.reason,
    tickRate: e.tickRate,
    userId: e.userId,
  };
}

export { ErrorCode, LeaveReason, ResumeFailure, RoomEventType };
