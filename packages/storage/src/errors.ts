/**
 * Error codes of @peony/storage and `StorageError`, the PeonyError every driver throws. Codes are
 * stable, messages are not: match on `code` with `isPeonyError(err, code)`. Driver and library
 * errors (classic-level, ioredis) are wrapped, never leaked, with the original as `cause`.
 */
import { PeonyError, isPeonyError } from '@peony/protocol'

/** Codes raised by storage drivers. Listed in docs/errors.md. */
export const StorageErrorCode = {
  /** Used before `open()` finished or after `close()` began. */
  NOT_OPEN: 'PEONY_STORAGE_NOT_OPEN',
  /** A key (or fence) that is not a non-empty string, is longer than 1024 UTF-8 bytes, contains `'\0'`, or breaks the fence scope rule. */
  INVALID_KEY: 'PEONY_STORAGE_INVALID_KEY',
  /** A value that is not a Uint8Array (a Buffer is one). */
  INVALID_VALUE: 'PEONY_STORAGE_INVALID_VALUE',
  /** The backend could not be reached: connection lost, refused or timed out. Retryable. */
  UNAVAILABLE: 'PEONY_STORAGE_UNAVAILABLE',
  /** The LevelDB directory is held by another process (or another handle in this one). Retryable. */
  LOCKED: 'PEONY_STORAGE_LOCKED',
  /** Any other driver error, wrapped with the original as `cause`. */
  FAILED: 'PEONY_STORAGE_FAILED',
  /** The remote storage host went away (its MessagePort closed). Retryable with a new port. */
  CLOSED: 'PEONY_STORAGE_CLOSED',
} as const
export type StorageErrorCode = (typeof StorageErrorCode)[keyof typeof StorageErrorCode]

const RETRYABLE: ReadonlySet<string> = new Set([StorageErrorCode.UNAVAILABLE, StorageErrorCode.LOCKED, StorageErrorCode.CLOSED])
/** Codes thrown before anything reaches the backend: such a call changed nothing. */
const NOT_APPLIED: ReadonlySet<string> = new Set([StorageErrorCode.NOT_OPEN, StorageErrorCode.INVALID_KEY, StorageErrorCode.INVALID_VALUE])

/** Options of a StorageError. `retryable` defaults to the code's (true for UNAVAILABLE, LOCKED, CLOSED). */
export interface StorageErrorOptions extends ErrorOptions {
  retryable?: boolean
  /** The driver knows the call changed nothing (see `StorageError.notApplied`). Default: true for NOT_OPEN, INVALID_KEY and INVALID_VALUE, else false. */
  notApplied?: boolean
}

/** The PeonyError thrown by every storage driver. */
export class StorageError<C extends StorageErrorCode = StorageErrorCode> extends PeonyError<C> {
  override name = 'StorageError'
  /**
   * True when the driver knows the failed call changed nothing: it was never sent (not open, not
   * connected) or the backend refused it as a whole. False means it **may** have been applied: a
   * timeout, or a connection lost after the call was sent, leaves a write that the backend may
   * still run. The output gate answers -10008 ("nothing applied") only when this is true.
   */
  readonly notApplied: boolean
  constructor(code: C, message: string, options: StorageErrorOptions = {}) {
    const { notApplied, ...rest } = options
    super(code, message, { ...rest, retryable: options.retryable ?? RETRYABLE.has(code) })
    this.notApplied = notApplied ?? NOT_APPLIED.has(code)
  }
}

/** True when `err` is known to have changed nothing (`StorageError.notApplied`, also across a RemoteStorage). */
export function isNotApplied(err: unknown): boolean {
  return isPeonyError(err) && (err as { notApplied?: unknown }).notApplied === true
}

/** True when `err` carries one of the storage codes (optionally exactly `code`). Matches by code, not class. */
export function isStorageError<C extends StorageErrorCode>(err: unknown, code?: C): err is StorageError<C> {
  if (!isPeonyError(err)) return false
  return code === undefined ? err.code.startsWith('PEONY_STORAGE_') : err.code === code
}

/**
 * What a driver error becomes at the public boundary: PeonyErrors and programmer errors
 * (TypeError, RangeError) pass through; anything else is `PEONY_STORAGE_FAILED`, in Peony's words,
 * with it as cause.
 */
export function toStorageError(err: unknown, what: string): Error {
  if (isPeonyError(err)) return err
  if (err instanceof TypeError || err instanceof RangeError) return err
  return new StorageError(StorageErrorCode.FAILED, `the storage driver failed ${what} (the driver's error is the cause)`, { cause: err })
}
