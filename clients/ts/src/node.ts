/**
 * The Node.js entry of @tickrelay/client: everything of the main entry, with
 * the `ws` package as the default WebSocket (Node 20 has no global one).
 *
 * @packageDocumentation
 */
import WebSocket from "ws";
import { TickrelayClient as BaseClient, type ClientOptions } from "./client.js";
import type { WebSocketFactory, WebSocketLike } from "./socket.js";

export * from "./index.js";

/** TLS and handshake options for Node's WebSocket, passed to `ws`. */
export interface NodeWebSocketOptions {
  /** Certificate authorities to trust (PEM), e.g. a private or self-signed relay's. */
  ca?: string | Buffer | (string | Buffer)[];
  /** A client certificate and its key (PEM), for mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Verify the relay's certificate. Default true; false only for tests. */
  rejectUnauthorized?: boolean;
  /** The TLS server name (SNI), if not the URL's host. */
  servername?: string;
  /** Extra HTTP headers for the upgrade request. */
  headers?: Record<string, string>;
  /** The Origin header to send (browsers send one; Node clients none by default). */
  origin?: string;
  /** How long the opening handshake may take, ms. */
  handshakeTimeout?: number;
  /** The local address to connect from (a load generator with several). */
  localAddress?: string;
}

/** A WebSocketFactory using the `ws` package with these options. */
export function nodeWebSocket(options: NodeWebSocketOptions = {}): WebSocketFactory {
  return (url, protocols) => new WebSocket(url, protocols, options) as unknown as WebSocketLike;
}

/** The client, defaulting to the `ws` package for its WebSocket. */
export class TickrelayClient extends BaseClient {
  constructor(options: ClientOptions) {
    super({ ...options, createWebSocket: options.createWebSocket ?? nodeWebSocket() });
  }
}
