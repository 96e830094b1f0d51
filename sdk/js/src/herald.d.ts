// Types of Herald's JavaScript client (src/herald.js).

/** One notification as herald delivers it. */
export interface Notification<T = unknown> {
  id: string;
  channel: string;
  /** Per channel, from 1, without gaps. */
  seq: number;
  /** Epoch milliseconds. */
  timestamp: number;
  event: string;
  object_type: string;
  object_name?: string;
  /** The publisher's payload, verbatim. */
  object: T;
}

/** The params of onNotificationReceived: notifications oldest first. */
export interface NotificationBatch {
  notifications: Notification[];
}

/**
 * The application's local interface: the methods herald may call. Only the
 * methods present here are announced in hello and ever called. A returned
 * value (or promise) is the JSON-RPC result; a thrown error the JSON-RPC
 * error (its `code` if it has an integer one, else -32000).
 */
export interface LocalInterface {
  onNotificationReceived?(batch: NotificationBatch): void | Promise<void>;
  [method: string]: ((params: any) => unknown) | undefined;
}

/** 'idle' until connect() (at once unless autoConnect is false). */
export type State = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface Position {
  seq: number;
  epoch: string;
}

export interface Subscription extends Position {
  channel: string;
  /** Set when the subscribe resumed: false means a gap could not be bridged. */
  recovered?: boolean;
}

export interface Presence {
  count: number;
  users: string[];
}

export interface HelloResult {
  session_id: string;
  user_id: string | null;
  server: { name: string; version: string };
  limits: { max_batch: number; max_frame_bytes: number };
}

export interface HeraldOptions {
  /** Client token (a JWT from the application's backend). */
  token?: string;
  /** Returns a fresh token: called on token_expired, before reconnecting
   * with an expired token, and when hello refuses the token. */
  getToken?: () => string | Promise<string>;
  localInterface?: LocalInterface | object;
  /** Names the client in hello. */
  client?: { name: string; version: string };
  /** A WebSocket constructor; default globalThis.WebSocket (pass the `ws`
   * package's on Node < 22 without --experimental-websocket). */
  WebSocket?: unknown;
  /** Default timeout of calls, ms (15000: above herald's default
   * limits.call_timeout, so that its -32050 arrives first). */
  callTimeout?: number;
  /** Reconnect delay bounds, ms (250 and 15000): doubling, with jitter.
   * Also the delays between attempts to get back a channel whose plugin was
   * unavailable (-32050) when the client re-subscribed. */
  minBackoff?: number;
  maxBackoff?: number;
  /** How often to ping herald, ms (25000; 0: never). */
  pingInterval?: number;
  /** Connect in the constructor (default true); false: call connect(). */
  autoConnect?: boolean;
}

export interface StateEvent {
  state: State;
  error?: Error;
}

export interface UnrecoveredEvent {
  /**
   * Channels herald could not resume without a gap (a resume answered
   * recovered: false, or a $server resync): the client took their new
   * positions; reload their state.
   */
  channels: string[];
}

export interface UnsubscribedEvent {
  /**
   * Channels the client no longer holds although it did not unsubscribe:
   * herald ended them (a $server unsubscribed: the token expired past
   * auth.expiry_grace, a plugin ended the subscription, or a reload removed
   * its plugin), or refused them
   * on a re-subscribe after a reconnect. They are not resumed; subscribe
   * again to get one back. A channel refused on that re-subscribe with
   * -32050 (plugin unavailable: it is restarting) is not reported here: it
   * is kept, and asked again on the same connection, with since and the
   * minBackoff..maxBackoff delays, each attempt reported through 'error',
   * until herald takes it or refuses it with another code (then it is
   * dropped and reported here); a reconnect meanwhile asks for it again.
   */
  channels: Array<{ channel: string; reason: string }>;
}

export declare const ServerChannel: '$server';

export declare const Codes: Readonly<{
  parseError: -32700;
  invalidRequest: -32600;
  methodNotFound: -32601;
  invalidParams: -32602;
  internal: -32603;
  application: -32000;
  unauthenticated: -32001;
  forbidden: -32003;
  unknownNamespace: -32004;
  limitExceeded: -32005;
  rateLimited: -32029;
  pluginUnavailable: -32050;
}>;

export declare class HeraldError extends Error {
  constructor(code: number, message: string, data?: unknown);
  code: number;
  data?: unknown;
  readonly refused: Array<{ channel: string; code: number; reason: string }>;
}

export declare class TimeoutError extends Error {}
export declare class ConnectionLostError extends Error {}

export declare function tokenExpiry(token: string): number | null;
export declare function backoff(min: number, max: number, attempt: number): number;

export declare class Herald {
  constructor(url: string, options?: HeraldOptions);
  readonly url: string;
  readonly state: State;
  readonly hello: HelloResult | null;
  /** The method names presented in hello. */
  readonly methods: string[];

  /** Start connecting: once, from 'idle'; the constructor calls it unless autoConnect is false. */
  connect(): void;
  on(event: 'state', fn: (e: StateEvent) => void): () => void;
  on(event: 'unrecovered', fn: (e: UnrecoveredEvent) => void): () => void;
  on(event: 'unsubscribed', fn: (e: UnsubscribedEvent) => void): () => void;
  /** Errors no call returns: a re-subscribe refused (for -32050, one per
   * attempt while the channel is kept), a token refresh that failed. */
  on(event: 'error', fn: (err: Error) => void): () => void;
  off(event: string, fn: (arg: any) => void): void;

  connected(): Promise<void>;
  subscribe(channels: string | string[], options?: { timeout?: number }): Promise<Subscription[]>;
  unsubscribe(channels: string | string[]): Promise<{ unsubscribed: string[] }>;
  call<T = unknown>(method: string, params?: unknown, options?: { timeout?: number }): Promise<T>;
  presence(channel: string): Promise<Presence>;
  authenticate(token: string): Promise<{ user_id: string; expires_at: string | null }>;
  position(channel: string): Position | null;
  channels(): string[];
  close(): void;
}

export default Herald;
