/**
 * PeonyError: the one error base of every Peony package. Every operational error carries a
 * stable `code` (`PEONY_<AREA>_<CONDITION>`, listed in docs/errors.md) and a `retryable` flag.
 * Guards compare codes, never classes, so duplicate installs of a package still match.
 */

/** Codes raised by the wire layer: the codec (@peony/protocol) and the sockets (@peony/broker-client). */
export const BrokerErrorCode = {
  /** A frame larger than the configured maximum, rejected before decoding. */
  FRAME_TOO_LARGE: 'PEONY_BROKER_FRAME_TOO_LARGE',
  /** A ZeroMQ message with more than one payload frame. */
  MULTIPART: 'PEONY_BROKER_MULTIPART',
  /** The frame is not one complete msgpack value (truncated, trailing bytes, invalid byte). */
  MALFORMED: 'PEONY_BROKER_MALFORMED',
  /** The frame (or a batch element) is not a map. */
  NOT_A_MAP: 'PEONY_BROKER_NOT_A_MAP',
  /** A required key (`cmd`) is missing. */
  MISSING_FIELD: 'PEONY_BROKER_MISSING_FIELD',
  /** A known key holds a value of the wrong msgpack type (a float in an int field, say). */
  WRONG_TYPE: 'PEONY_BROKER_WRONG_TYPE',
  /** A known key holds a value outside its range. */
  OUT_OF_RANGE: 'PEONY_BROKER_OUT_OF_RANGE',
  /** An `ipc://` endpoint is already served by a live process. */
  ENDPOINT_IN_USE: 'PEONY_BROKER_ENDPOINT_IN_USE',
  /** Binding or connecting an endpoint failed. */
  ENDPOINT_FAILED: 'PEONY_BROKER_ENDPOINT_FAILED',
  /** The socket or client is not open. */
  NOT_OPEN: 'PEONY_BROKER_NOT_OPEN',
  /** A message could not be encoded (unsupported value, out-of-range integer). */
  ENCODE_FAILED: 'PEONY_BROKER_ENCODE_FAILED',
  /** A user callback given to the wire layer (`onTasks`, `onReject`, `onOverflow`) threw; it is reported, the loop goes on. */
  CALLBACK_FAILED: 'PEONY_BROKER_CALLBACK_FAILED',
  /** An unexpected ZeroMQ error on an open socket (not a closed socket, not EAGAIN); it is reported, the loop goes on. */
  SOCKET_FAILED: 'PEONY_BROKER_SOCKET_FAILED',
  /** A business body (protocol §4) that the body codec cannot read; answered with -10004. */
  BODY_UNDECODABLE: 'PEONY_BROKER_BODY_UNDECODABLE',
} as const
export type BrokerErrorCode = (typeof BrokerErrorCode)[keyof typeof BrokerErrorCode]

/** Options of a PeonyError. */
export interface PeonyErrorOptions extends ErrorOptions {
  /** True when the same operation may succeed if tried again later (a connection loss, say). */
  retryable?: boolean
}

/** The base class of every coded Peony error. */
export class PeonyError<C extends string = string> extends Error {
  override name = 'PeonyError'
  readonly code: C
  readonly retryable: boolean
  constructor(code: C, message: string, options: PeonyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.retryable = options.retryable ?? false
  }
}

/** True when `err` is a PeonyError-shaped object, optionally with the given code. Matches by `code`, not class. */
export function isPeonyError<C extends string>(err: unknown, code?: C): err is PeonyError<C> {
  if (typeof err !== 'object' || err === null) return false
  const c = (err as { code?: unknown }).code
  if (typeof c !== 'string' || !c.startsWith('PEONY_')) return false
  return code === undefined || c === code
}

/** Turns anything thrown into a PeonyError with the given code, keeping the original as `cause`. */
export function toPeonyError<C extends string>(err: unknown, code: C, message?: string): PeonyError {
  if (isPeonyError(err)) return err
  const msg = message ?? (err instanceof Error ? err.message : String(err))
  return new PeonyError(code, msg, { cause: err })
}
