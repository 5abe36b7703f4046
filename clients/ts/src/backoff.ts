/** How the client reconnects after a connection was lost. */
export interface ReconnectOptions {
  /** Reconnect at all. Default true. */
  enabled?: boolean;
  /** The delay before the first attempt, before jitter. Default 250 ms. */
  initialDelayMs?: number;
  /** The largest delay between two attempts, before jitter. Default 10,000 ms. */
  maxDelayMs?: number;
  /** Each failed attempt multiplies the delay by this. Default 2. */
  multiplier?: number;
  /**
   * The share of each delay that is random, 0-1: a delay d becomes a uniform
   * draw from [d × (1 − jitter), d], so that clients dropped together do not
   * come back together. Default 0.5.
   */
  jitter?: number;
  /**
   * Attempts after one lost connection before the client gives up (state
   * "closed"). Default Infinity: keep trying until close() is called.
   */
  maxAttempts?: number;
}

/** ReconnectOptions with every default filled in. */
export type ResolvedReconnectOptions = Required<ReconnectOptions>;

export function resolveReconnectOptions(o: ReconnectOptions | false | undefined): ResolvedReconnectOptions {
  const r: ResolvedReconnectOptions = {
    enabled: o !== false && (o?.enabled ?? true),
    initialDelayMs: (o || {}).initialDelayMs ?? 250,
    maxDelayMs: (o || {}).maxDelayMs ?? 10_000,
    multiplier: (o || {}).multiplier ?? 2,
    jitter: (o || {}).jitter ?? 0.5,
    maxAttempts: (o || {}).maxAttempts ?? Infinity,
  };
  if (!(r.initialDelayMs >= 0) || !(r.maxDelayMs >= r.initialDelayMs)) {
    throw new RangeError("tickrelay: reconnect: need 0 <= initialDelayMs <= maxDelayMs");
  }
  if (!(r.multiplier >= 1)) throw new RangeError("tickrelay: reconnect: multiplier must be at least 1");
  if (!(r.jitter >= 0 && r.jitter <= 1)) throw new RangeError("tickrelay: reconnect: jitter must be within 0-1");
  if (!(r.maxAttempts >= 0)) throw new RangeError("tickrelay: reconnect: maxAttempts must not be negative");
  return r;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first after a
 * loss): exponential, capped, with jitter. `random` returns [0, 1).
 */
export function backoffDelay(attempt: number, o: ResolvedReconnectOptions, random: () => number = Math.random): number {
  const base = Math.min(o.maxDelayMs, o.initialDelayMs * Math.pow(o.multiplier, attempt));
  return base * (1 - o.jitter * random());
}
