/**
 * Clock synchronisation from Pongs: the offset of the relay's clock and the
 * round-trip time as exponentially weighted moving averages, and the room's
 * tick schedule on the relay's clock.
 *
 * The tick estimate uses that a Pong's `tick` and `server_time` are read
 * together on the relay, and that the relay's tick n is current from its
 * deadline origin + n × period until the next one. Each Pong thus bounds the
 * schedule's origin on the relay clock: origin ∈ (s − (n+1)·p, s − n·p].
 * Intersecting the bounds of recent Pongs narrows the origin to well under a
 * tick, free of network jitter; the network only enters through the offset
 * that maps local time onto the relay's clock.
 */

/** One Pong, with local times from a monotonic clock in ms. */
export interface ClockSample {
  /** Local time the Ping was sent. */
  readonly sentAt: number;
  /** Local time the Pong arrived. */
  readonly receivedAt: number;
  /** Pong.server_time in Unix ms (fractional). */
  readonly serverTime: number;
  /** Pong.tick: the room's current tick (0 outside a room). */
  readonly tick: number;
  /** Pong.tick_rate (0 outside a room or in immediate mode). */
  readonly tickRate: number;
}

export interface ClockSyncOptions {
  /** Weight of a new sample in the offset and RTT averages, (0, 1]. Default 0.2. */
  alpha?: number;
  /** Pongs kept to bound the tick schedule. Default 32. */
  window?: number;
}

/** What ClockSync knows; every time in ms. */
export interface ClockEstimate {
  /** Smoothed round-trip time; NaN before the first sample. */
  readonly rttMs: number;
  /** Smoothed relay clock − local Unix clock; NaN before the first sample. */
  readonly offsetMs: number;
  /** Samples taken. */
  readonly samples: number;
}

/** Accumulates Pong samples. Not goroutine-safe (JavaScript has one thread). */
export class ClockSync {
  private readonly alpha: number;
  private readonly windowSize: number;
  private rtt = NaN;
  private offset = NaN;
  private count = 0;
  /** Recent (serverTime, tick) pairs at the current tick rate. */
  private window: { serverTime: number; tick: number }[] = [];
  private rate = 0;
  /** The schedule's origin on the relay clock (ms), or NaN. */
  private origin = NaN;
  /** The last tick seen in a frame or a pong, for immediate rooms and before any pong. */
  private lastTick = 0;
  private lastTickAt = NaN; // relay-clock ms when lastTick was seen

  /**
   * @param localUnixMs maps a monotonic local time (ms) to Unix ms.
   */
  constructor(
    private readonly localUnixMs: (monotonicMs: number) => number,
    o: ClockSyncOptions = {},
  ) {
    this.alpha = o.alpha ?? 0.2;
    this.windowSize = o.window ?? 32;
    if (!(this.alpha > 0 && this.alpha <= 1)) throw new RangeError("tickrelay: clock alpha must be within (0, 1]");
    if (!(this.windowSize >= 1)) throw new RangeError("tickrelay: clock window must be at least 1");
  }

  get estimate(): ClockEstimate {
    return { rttMs: this.rtt, offsetMs: this.offset, samples: this.count };
  }

  /** Adds one Pong. */
  add(s: ClockSample): void {
    const rtt = Math.max(0, s.receivedAt - s.sentAt);
    // The relay read its clock about halfway through the round trip.
    const offset = s.serverTime - this.localUnixMs(s.sentAt + rtt / 2);
    if (this.count === 0) {
      this.rtt = rtt;
      this.offset = offset;
    } else {
      // A sample that waited in a queue somewhere has a long RTT and a
      // skewed midpoint: let it move the offset less.
      const weight = rtt > 2 * this.rtt + 5 ? this.alpha / 4 : this.alpha;
      this.offset += weight * (offset - this.offset);
      this.rtt += this.alpha * (rtt - this.rtt);
    }
    this.count++;
    this.observeSchedule(s.serverTime, s.tick, s.tickRate);
  }

  /** Records that the room's tick rate changed (TICK_RATE_CHANGED, a new room): the schedule starts over. */
  resetSchedule(tickRate: number, tick?: number): void {
    this.rate = tickRate;
    this.window = [];
    this.origin = NaN;
    if (tick !== undefined) {
      this.lastTick = tick;
      this.lastTickAt = this.serverNow(this.now());
    }
  }

  /**
   * Records a tick seen in a Joined or a Frame, arriving now: a fallback
   * before the first Pong of the room, and the clock of immediate rooms.
   */
  observeTick(tick: number): void {
    if (tick >= this.lastTick || Number.isNaN(this.lastTickAt)) {
      this.lastTick = tick;
      this.lastTickAt = this.serverNow(this.now());
    }
  }

  /** The relay's clock now, in Unix ms (the local clock before the first sample). */
  serverNow(monotonicNow: number = this.now()): number {
    const local = this.localUnixMs(monotonicNow);
    return Number.isNaN(this.offset) ? local : local + this.offset;
  }

  /**
   * The room's tick now on the relay, fractional (floor it for the current
   * tick number). Before the first Pong in the room it extrapolates from the
   * last tick seen; in immediate rooms (no tick rate) it is the last tick seen.
   */
  serverTick(monotonicNow: number = this.now()): number {
    const t = this.serverNow(monotonicNow);
    if (this.rate > 0 && !Number.isNaN(this.origin)) {
      return (t - this.origin) * (this.rate / 1000);
    }
    if (this.rate > 0 && !Number.isNaN(this.lastTickAt)) {
      // The tick was seen on arrival: about half an RTT after it began, a
      // phase of half a tick on average.
      return this.lastTick + 0.5 + (t - this.lastTickAt) * (this.rate / 1000);
    }
    return this.lastTick;
  }

  private observeSchedule(serverTime: number, tick: number, rate: number): void {
    if (rate <= 0) {
      if (this.rate !== 0) this.resetSchedule(0);
      return;
    }
    if (rate !== this.rate) this.resetSchedule(rate);
    this.window.push({ serverTime, tick });
    if (this.window.length > this.windowSize) this.window.shift();
    const p = 1000 / rate;
    let lo = -Infinity;
    let hi = Infinity;
    for (const w of this.window) {
      lo = Math.max(lo, w.serverTime - (w.tick + 1) * p);
      hi = Math.min(hi, w.serverTime - w.tick * p);
    }
    if (lo > hi + 1) {
      // The bounds disagree by more than clock granularity: the schedule
      // moved (a skipped tick, a rate change we have not seen). Start over
      // from this sample.
      this.window = [{ serverTime, tick }];
      lo = serverTime - (tick + 1) * p;
      hi = serverTime - tick * p;
    }
    this.origin = (lo + hi) / 2;
    this.lastTick = Math.max(this.lastTick, tick);
  }

  private now(): number {
    return performance.now();
  }
}
