import { ErrorCode, ResumeFailure } from "./gen/tickrelay/v1/tickrelay_pb.js";
import type { CloseCause } from "./closes_gen.js";

/**
 * An Error message from the relay: the refusal of a request (join, leave,
 * ping), or an unsolicited error such as the refusal of a send or a rate
 * limit (the "error" event). Test `code` against ErrorCode, never `message`.
 */
export class TickrelayError extends Error {
  override readonly name = "TickrelayError";
  /** The relay's error code (ErrorCode.ROOM_FULL, ...). */
  readonly code: ErrorCode;
  /** The request this answers, or 0 for an error not caused by one request. */
  readonly requestId: number;
  /** RATE_LIMITED, SERVER_FULL, OVERLOADED: wait at least this long, in ms (0: not given). */
  readonly retryAfterMs: number;
  /** A machine-readable refinement of code (e.g. UNAUTHORIZED's "expired"); empty when none. */
  readonly reason: string;
  /** The relay's human-readable detail, for logs. */
  readonly detail: string;
  /** INPUT_TOO_LATE: the room's current open tick. */
  readonly tick: number;

  constructor(init: { code: ErrorCode; requestId: number; retryAfterMs?: number; reason?: string; detail?: string; tick?: number }) {
    const name = errorCodeName(init.code);
    super(init.detail ? `tickrelay: ${name}: ${init.detail}` : `tickrelay: ${name}`);
    this.code = init.code;
    this.requestId = init.requestId;
    this.retryAfterMs = init.retryAfterMs ?? 0;
    this.reason = init.reason ?? "";
    this.detail = init.detail ?? "";
    this.tick = init.tick ?? 0;
  }

  /** The code's name without its prefix: "ROOM_FULL". */
  get codeName(): string {
    return errorCodeName(this.code);
  }
}

/** The name of an ErrorCode: "ROOM_FULL"; "ErrorCode(99)" for a code this SDK does not know. */
export function errorCodeName(code: ErrorCode): string {
  return ErrorCode[code] ?? `ErrorCode(${code})`;
}

/** The name of a ResumeFailure: "SEAT_EXPIRED"; "ResumeFailure(99)" for one this SDK does not know. */
export function resumeFailureName(f: ResumeFailure): string {
  return ResumeFailure[f] ?? `ResumeFailure(${f})`;
}

/** How a connection ended. */
export interface CloseInfo {
  /**
   * The code of the relay's Close frame; 1006 when the connection was lost
   * without one (a network failure, or the relay stopped answering: see
   * `reason`), 1005 for a Close without a code.
   */
  readonly code: number;
  /** The Close frame's reason, or the local cause of a lost connection. */
  readonly reason: string;
  /** The relay's cause, from the close-code table (undefined for 1005, 1006). */
  readonly cause: CloseCause | undefined;
  /** The Error the relay sent just before closing (e.g. SERVER_FULL with retryAfterMs). */
  readonly error: TickrelayError | undefined;
  /** Connecting again makes sense (the relay's rule: closes.MayReconnect). */
  readonly mayReconnect: boolean;
  /** The client will reconnect by itself (mayReconnect, reconnect enabled, not closed by you). */
  readonly willReconnect: boolean;
  /** close() was called: the end was asked for. */
  readonly byClient: boolean;
}

/** A request failed because its connection ended first, or the client is closed. */
export class ConnectionClosedError extends Error {
  override readonly name = "ConnectionClosedError";
  /** How the connection ended. */
  readonly close: CloseInfo;
  constructor(close: CloseInfo, what = "connection closed") {
    super(`tickrelay: ${what}: ${close.code}${close.reason ? " " + close.reason : ""}`);
    this.close = close;
  }
}

/** A request got no answer in time (RequestOptions.timeoutMs). */
export class RequestTimeoutError extends Error {
  override readonly name = "RequestTimeoutError";
  readonly requestId: number;
  readonly timeoutMs: number;
  constructor(what: string, requestId: number, timeoutMs: number) {
    super(`tickrelay: ${what}: no answer within ${timeoutMs} ms`);
    this.requestId = requestId;
    this.timeoutMs = timeoutMs;
  }
}
