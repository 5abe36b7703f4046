import type { LeaveReason, ResumeFailure, RoomEventType } from "./gen/tickrelay/v1/tickrelay_pb.js";
import type { CloseInfo } from "./errors.js";

/**
 * Where the client is:
 * - "idle": created, connect() not called yet;
 * - "connecting": the first connection is being made;
 * - "open": connected, the relay answered; requests go out at once;
 * - "reconnecting": the connection was lost and the client is getting it
 *   back (waiting for its backoff, connecting, or rejoining its room);
 * - "closed": for good (close() was called, the relay asked not to
 *   reconnect, or the reconnect attempts ran out).
 */
export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** One player of a room. */
export interface Member {
  /** Unique in the room for the room's life: ids are never reused. */
  readonly playerId: number;
  /** The metadata the player joined with. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The player's user id from its auth token (empty without authentication). */
  readonly userId: string;
  /** The player's connection dropped and its seat is kept for a resume. */
  readonly away: boolean;
}

/** One relayed message. */
export interface Delivery {
  /** The sending player's id. */
  readonly sender: number;
  /** The application-defined kind the sender gave. */
  readonly kind: number;
  /** The bytes the sender sent; a view of this message's own buffer that may be kept. */
  readonly payload: Uint8Array;
}

/** A change of membership or of room settings, as the relay reports it. */
export interface RoomEvent {
  readonly type: RoomEventType;
  /** The player that joined, left, went away or came back; the new host. */
  readonly playerId: number;
  /** PLAYER_JOINED: the player's metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** PLAYER_LEFT: why. */
  readonly reason: LeaveReason;
  /** TICK_RATE_CHANGED: the new rate (0: immediate). */
  readonly tickRate: number;
  /** PLAYER_JOINED: the player's user id, if any. */
  readonly userId: string;
}

/**
 * Everything the room addressed to this player during one tick: at most one
 * Frame per tick, except that a frame larger than the relay's maximum frame
 * size comes as several Frames with the same tick.
 */
export interface Frame {
  /** The room's tick number (exact below 2^53). */
  readonly tick: number;
  /** The seat's frame sequence number (0 from relays that keep no replay). */
  readonly seq: number;
  /** The relayed messages, in the order the room received them (per sender: send order). */
  readonly deliveries: readonly Delivery[];
  /**
   * The room events of the tick, in order. The client has applied
   * PLAYER_JOINED events to `members` before this frame is handed to you, and
   * applies the others after, as the protocol asks: the senders of the
   * deliveries are always members while you handle the frame.
   */
  readonly events: readonly RoomEvent[];
}

/** Options of a room, used only when the join creates it. Omitted fields mean the relay's defaults. */
export interface RoomOptions {
  /** Capacity (relay default 16; above the relay's cap: INVALID_ARGUMENT). */
  maxPlayers?: number;
  /** Ticks per second (relay default 30; outside its bounds: INVALID_ARGUMENT). */
  tickRate?: number;
  /** Deliver each message at once instead of batching per tick (if the relay allows it). */
  immediate?: boolean;
  /** Free-form metadata of the room. */
  metadata?: Record<string, string>;
}

/** Which room to join. */
export interface JoinOptions {
  /** The room: 1-64 bytes of [A-Za-z0-9_.:-]. Leave empty with `create` for a relay-made code. */
  roomId?: string;
  /** Create a new room with a relay-made code (in Joined.roomId); roomId must be empty. */
  create?: boolean;
  /** Create the room roomId when it does not exist (else: ROOM_NOT_FOUND). */
  createIfMissing?: boolean;
  /** The room's options, if this join creates it. */
  room?: RoomOptions;
  /** This player's metadata, shown to the others. */
  metadata?: Record<string, string>;
  /** An auth token for this join; overrides ClientOptions.authToken. */
  authToken?: string;
  /** How long to wait for the answer. Default ClientOptions.requestTimeoutMs. */
  timeoutMs?: number;
}

/** The room after a successful join. */
export interface Joined {
  readonly roomId: string;
  /** This player's id in the room. */
  readonly playerId: number;
  /** The current host: the oldest member. */
  readonly hostId: number;
  /** Ticks per second; 0 in immediate mode. */
  readonly tickRate: number;
  /** The room's tick when it answered. */
  readonly tick: number;
  /** Every member, oldest first, this player included. */
  readonly members: readonly Member[];
  readonly maxPlayers: number;
  readonly roomMetadata: Readonly<Record<string, string>>;
  readonly immediate: boolean;
  /** How long the relay keeps the seat after a lost connection, ms (0: none). */
  readonly seatGraceMs: number;
}

/** How one send is delivered. */
export interface SendOptions {
  /** Application-defined kind (uint32), relayed as is; the conflation key of latestOnly. Default 0. */
  kind?: number;
  /** Player ids to deliver to (at most 1,024); empty: every other member. */
  targets?: readonly number[];
  /** Deliver to the sender too. */
  echo?: boolean;
  /**
   * A state update: while an earlier latest-only message of this kind (to the
   * same recipients) still waits for its tick, this one replaces it.
   */
  latestOnly?: boolean;
}

/** Why the player is no longer in its room. */
export interface LeftInfo {
  readonly roomId: string;
  /**
   * LEFT (you called leave), KICKED, ROOM_CLOSED (an operator closed it; the
   * connection stays open), SLOW_CONSUMER, or DISCONNECTED (the connection
   * was lost and the client gave up getting back in).
   */
  readonly reason: LeaveReason;
  /** The operator's reason, if any. */
  readonly message: string;
}

/** The answer to ping(). */
export interface PingResult {
  /** This round trip, ms. */
  readonly rttMs: number;
  /** The relay's clock, Unix ms. */
  readonly serverTime: number;
  /** The room's tick when the relay answered (0 outside a room). */
  readonly tick: number;
  /** The room's tick rate (0 outside a room or in immediate mode). */
  readonly tickRate: number;
}

/** A reconnect attempt is scheduled. */
export interface ReconnectingInfo {
  /** 1 for the first attempt after the loss. */
  readonly attempt: number;
  /** The wait before it, ms (at least the relay's retryAfterMs, if it gave one). */
  readonly delayMs: number;
  /** How the connection ended. */
  readonly close: CloseInfo;
}

/** The connection is back. */
export interface ReconnectedInfo {
  /** Attempts it took. */
  readonly attempts: number;
  /**
   * The seat the client holds now when it is not the one it had: the room
   * joined again (no resume, or the room was gone), or the seat the relay
   * gave after a failed resume; a new player id (the same after TOO_OLD)
   * and the room's members now. Undefined when the seat was resumed as it
   * was (see `resumed`), the client was in no room, or rejoining failed
   * (rejoinError).
   */
  readonly rejoined: Joined | undefined;
  /** Why rejoining the room failed (the room is gone, full, ...); the client stays connected. */
  readonly rejoinError: Error | undefined;
  /** How the Resume went; undefined when none was tried (no room, resume off, a relay without seats). */
  readonly resumed: ResumedInfo | undefined;
}

/** The outcome of a Resume after a reconnect. */
export interface ResumedInfo {
  /** The seat is back with every frame it missed: the game goes on. */
  readonly recovered: boolean;
  /** Why not (ResumeFailure.SEAT_EXPIRED, TOO_OLD, ROOM_GONE, ...); UNSPECIFIED when recovered. */
  readonly failure: ResumeFailure;
  /** Frames the relay replayed. */
  readonly replayed: number;
  /** Sends re-sent because the relay had not got them (Resumed.input_ack). */
  readonly inputsResent: number;
  /** Sends that will never arrive: the seat was not recovered, or they were pushed out of the resendInputs kept. */
  readonly inputsLost: number;
}

/** The "resync" event: the seat could not be taken back as it was. */
export interface ResyncInfo {
  /** Why (ResumeFailure.SEAT_EXPIRED: a new seat; TOO_OLD: the same seat, the missed frames gone; ROOM_GONE: the room made again). */
  readonly reason: ResumeFailure;
  /** The seat now: rebuild the game from it. */
  readonly joined: Joined;
  /** The player id before (differs from joined.playerId for a new seat). */
  readonly previousPlayerId: number;
}

/** What a client went through across reconnects (TickrelayClient.stats). */
export interface SessionStats {
  /** Connections after the first that serve. */
  readonly reconnects: number;
  /** Resumes that took the seat back with every frame. */
  readonly recovered: number;
  /** Times the game had to resynchronise instead ("resync"). */
  readonly resyncs: number;
  /** Frames the relay replayed on resume. */
  readonly framesReplayed: number;
  /** Frames received twice and dropped (by Frame.seq). */
  readonly duplicatesDropped: number;
  /** Sends re-sent after a resume. */
  readonly inputsResent: number;
  /** Sends that could not be delivered (the seat was lost, or too many were waiting). */
  readonly inputsLost: number;
}
