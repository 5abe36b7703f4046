/**
 * @tickrelay/client: the TypeScript client of the tickrelay game relay, for
 * browsers and Node.js. This entry uses the platform's WebSocket; Node.js
 * resolves the package to ./node.js, which uses the `ws` package.
 *
 * @packageDocumentation
 */
export { TickrelayClient, SUBPROTOCOL, type ClientEvents, type ClientOptions } from "./client.js";
export type * from "./types.js";
export { TickrelayError, ConnectionClosedError, RequestTimeoutError, errorCodeName, resumeFailureName, type CloseInfo } from "./errors.js";
export { mayReconnect, closeCauseOf, CLOSE_CAUSES, RECONNECT_CODE_RANGES, type CloseCause } from "./closes.js";
export { backoffDelay, resolveReconnectOptions, type ReconnectOptions, type ResolvedReconnectOptions } from "./backoff.js";
export { ClockSync, type ClockEstimate, type ClockSample, type ClockSyncOptions } from "./clock.js";
export { platformWebSocket, type WebSocketFactory, type WebSocketLike } from "./socket.js";
export { ErrorCode, LeaveReason, ResumeFailure, RoomEventType } from "./gen/tickrelay/v1/tickrelay_pb.js";
