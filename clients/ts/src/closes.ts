import { CLOSE_CAUSES, RECONNECT_CODE_RANGES, type CloseCause } from "./closes_gen.js";

export { CLOSE_CAUSES, RECONNECT_CODE_RANGES, type CloseCause };

/**
 * Whether a client may connect again (with backoff) after its connection
 * ended with `code`: the relay's own rule (proto/closes.MayReconnect), from
 * the generated table. Yes for 1001 (going away, draining), 1005 (a Close
 * without a code, from something in between), 1006 (the connection dropped),
 * 1011-1014 and tickrelay's 4000-4499; no for a normal close (1000), a
 * protocol error the client would repeat (1002, 1003, 1007-1009) and
 * 4500-4999 (kicked, unauthorized, origin not allowed...).
 */
export function mayReconnect(code: number): boolean {
  return RECONNECT_CODE_RANGES.some(([lo, hi]) => code >= lo && code <= hi);
}

/**
 * The relay's cause for a close with this code and reason, when it is one
 * the relay sends: the exact code and reason first (the relay's reasons are
 * fixed texts), else the only cause with this code. Undefined for codes the
 * relay does not send (1005, 1006) or shares between causes whose reason
 * did not match.
 */
export function closeCauseOf(code: number, reason: string): CloseCause | undefined {
  const same = CLOSE_CAUSES.filter((c) => c.code === code);
  return same.find((c) => c.reason === reason) ?? (same.length === 1 ? same[0] : undefined);
}
