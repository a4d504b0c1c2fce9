/**
 * Error codes of @peony/worker and `WorkerError`, the PeonyError that carries the context of a
 * failing handler, hook or timer (`cmd`, `uid`, `hook`). Codes are stable, messages are not:
 * match on `code` with `isPeonyError(err, code)`.
 */
import { PeonyError, type Uid } from '@peony/protocol'

/** Codes raised by the worker runtime. Listed in docs/errors.md. */
export const WorkerErrorCode = {
  /** A different handler was registered for a body `cmd` that already has one (thrown by `route`/`register`). */
  ROUTE_DUPLICATE: 'PEONY_ROUTE_DUPLICATE',
  /** `addHook`/`addAppHook` was called with a name that is not a hook (thrown). */
  HOOK_NOT_SUPPORTED: 'PEONY_HOOK_NOT_SUPPORTED',
  /** A hook or route was added after a runtime hosting the app started, or `start()` was called twice (thrown). */
  ALREADY_STARTED: 'PEONY_ALREADY_STARTED',
  /** `dispatch` was called before `start()` (thrown; a host bug). */
  WORKER_NOT_STARTED: 'PEONY_WORKER_NOT_STARTED',
  /** `dispatch` or a timer was used after `stop()` was called (thrown; a host or app bug). */
  WORKER_STOPPED: 'PEONY_WORKER_STOPPED',
  /** A route handler (or the onClientCreated/onClientClosed/onTask hook serving a task) threw or rejected. Reported to onError. */
  HANDLER_FAILED: 'PEONY_HANDLER_FAILED',
  /** A handler had not settled `workTimeoutMs` after its task started. Reported to onError. */
  HANDLER_TIMEOUT: 'PEONY_HANDLER_TIMEOUT',
  /** A hook threw or rejected. Reported to onError (a pre-hook failure also ends its request with -10001). */
  HOOK_FAILED: 'PEONY_HOOK_FAILED',
  /** A `worker.timers` callback threw or rejected. Reported to onError; the timer stays scheduled. */
  TIMER_FAILED: 'PEONY_TIMER_FAILED',
  /** A player's session could not be loaded (storage error, or the app's `decode` threw). Waiting tasks are answered -10005. */
  SESSION_LOAD_FAILED: 'PEONY_SESSION_LOAD_FAILED',
  /** A session load did not finish within `loadTimeoutMs`. Waiting tasks are answered -10005. */
  SESSION_LOAD_TIMEOUT: 'PEONY_SESSION_LOAD_TIMEOUT',
  /** A write-behind flush failed; the sessions stay dirty and are retried with back-off. Reported to onError (rate-limited). */
  SESSION_FLUSH_FAILED: 'PEONY_SESSION_FLUSH_FAILED',
  /** The app's `encode` threw for a session; the session stays dirty and is retried. Reported to onError. */
  SESSION_ENCODE_FAILED: 'PEONY_SESSION_ENCODE_FAILED',
  /** Storage refused a flush because a newer owner loaded the session (fencing); this copy is dropped. Reported to onError. */
  SESSION_FENCED: 'PEONY_SESSION_FENCED',
  /** A session was found changed at eviction or stop although nothing marked it dirty; it is written. Logged (warn, rate-limited). */
  SESSION_UNMARKED_CHANGE: 'PEONY_SESSION_UNMARKED_CHANGE',
  /** A session was changed after it was evicted (its changes would be lost); thrown. */
  SESSION_EVICTED: 'PEONY_SESSION_EVICTED',
  /** A durable timer fired whose name has no handler in the session definition. Reported; the timer is dropped. */
  SESSION_TIMER_UNKNOWN: 'PEONY_SESSION_TIMER_UNKNOWN',
  /** The app defines sessions but the runtime was given no storage, or sessions are used without a definition (thrown). */
  SESSION_NOT_CONFIGURED: 'PEONY_SESSION_NOT_CONFIGURED',
} as const
export type WorkerErrorCode = (typeof WorkerErrorCode)[keyof typeof WorkerErrorCode]

/** Context of a WorkerError. */
export interface WorkerErrorContext {
  /** The body cmd of the request, when there is one. */
  cmd?: number | string | undefined
  /** The task's uid, when it has one. */
  uid?: Uid | undefined
  /** The task cmd (10, 15, 20, 100, …), when a task is involved. */
  taskCmd?: number | undefined
  /** The hook that failed (for `PEONY_HOOK_FAILED`). */
  hook?: string | undefined
  /** The original error. */
  cause?: unknown
}

/** A PeonyError raised around user code: a handler, hook or timer that failed or timed out. */
export class WorkerError<C extends WorkerErrorCode = WorkerErrorCode> extends PeonyError<C> {
  override name = 'WorkerError'
  /** The body cmd of the request, when there is one. */
  readonly cmd: number | string | undefined
  /** The task's uid, when it has one. */
  readonly uid: Uid | undefined
  /** The task cmd, when a task is involved. */
  readonly taskCmd: number | undefined
  /** The hook that failed, for `PEONY_HOOK_FAILED`. */
  readonly hook: string | undefined
  constructor(code: C, message: string, context: WorkerErrorContext = {}) {
    super(code, message, context.cause === undefined ? {} : { cause: context.cause })
    this.cmd = context.cmd
    this.uid = context.uid
    this.taskCmd = context.taskCmd
    this.hook = context.hook
  }
}
