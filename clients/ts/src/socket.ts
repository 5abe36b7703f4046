/**
 * The part of the WebSocket API the client uses: what browsers, Node 22's
 * global WebSocket and the `ws` package all have. Handlers take `never` so
 * that any implementation's own event types fit.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  readonly protocol: string;
  onopen: ((ev: never) => void) | null;
  onmessage: ((ev: never) => void) | null;
  onclose: ((ev: never) => void) | null;
  onerror: ((ev: never) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** Opens a WebSocket to url offering protocols; the client sets binaryType and the handlers. */
export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

/** WebSocket.OPEN. */
export const OPEN = 1;

/** The platform's WebSocket (browsers, Deno, Node 22+), if it has one. */
export function platformWebSocket(): WebSocketFactory | undefined {
  const WS = (globalThis as { WebSocket?: new (url: string, protocols?: string[]) => WebSocketLike }).WebSocket;
  if (typeof WS !== "function") return undefined;
  return (url, protocols) => new WS(url, protocols);
}
