/**
 * A minimal typed event emitter. Listeners run synchronously, in the order
 * they were added; one that throws does not stop the others (its error is
 * reported with `reportError` where the platform has it, else on the console).
 */
export class Emitter<Events extends { [K in keyof Events]: (...args: never[]) => void }> {
  private readonly listeners = new Map<keyof Events, Set<Events[keyof Events]>>();

  /**
   * Adds a listener and returns a function that removes it.
   */
  on<K extends keyof Events>(event: K, listener: Events[K]): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  /** Adds a listener that is removed after its first call. */
  once<K extends keyof Events>(event: K, listener: Events[K]): () => void {
    const off = this.on(event, ((...args: Parameters<Events[K]>) => {
      off();
      (listener as (...a: Parameters<Events[K]>) => void)(...args);
    }) as unknown as Events[K]);
    return off;
  }

  /** Removes a listener added with on. */
  off<K extends keyof Events>(event: K, listener: Events[K]): void {
    this.listeners.get(event)?.delete(listener);
  }

  /** True when event has at least one listener. */
  protected hasListeners<K extends keyof Events>(event: K): boolean {
    return (this.listeners.get(event)?.size ?? 0) > 0;
  }

  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (...a: Parameters<Events[K]>) => void)(...args);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }
}

function reportListenerError(err: unknown): void {
  const g = globalThis as { reportError?: (e: unknown) => void };
  if (typeof g.reportError === "function") {
    g.reportError(err);
  } else {
    console.error("tickrelay: a listener threw:", err);
  }
}
