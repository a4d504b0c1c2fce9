/**
 * The work deadline. A request under watch whose pre-hooks + handler have not settled by its
 * deadline is answered -10001 (if not replied), counted in `timedOut`, logged and reported to
 * onError (PEONY_HANDLER_TIMEOUT); the pipeline learns it when the request settles (`finish`).
 * One clock timer, armed for the earliest deadline.
 */
import { WorkerError, WorkerErrorCode } from '../errors.ts'
import type { PeonyRequest } from '../request.ts'
import type { Clock, RuntimeLogger } from './contract.ts'
import { replyFailed } from './replies.ts'
import type { ErrorReporter } from './report.ts'
import type { Counters } from './stats.ts'

function unref(handle: unknown): void {
  if (typeof handle === 'object' && handle !== null) (handle as { unref?: () => void }).unref?.()
}

/** Watches requests' work deadlines. */
export class Watchdog {
  readonly #clock: Clock
  /** The runtime's workTimeoutMs (a route's own overrides it), for the timeout message. */
  readonly #timeoutMs: number
  readonly #counters: Counters
  readonly #reporter: ErrorReporter
  readonly #log: RuntimeLogger

  /** Requests under a deadline → deadline (ms on the clock). */
  readonly #watched = new Map<PeonyRequest, number>()
  /** Requests whose deadline passed → the timeout error. */
  readonly #timedOut = new Map<PeonyRequest, WorkerError>()
  #handle: unknown = undefined
  #at = Infinity
  readonly #fire = (): void => this.#onFire()

  constructor(clock: Clock, timeoutMs: number, counters: Counters, reporter: ErrorReporter, log: RuntimeLogger) {
    this.#clock = clock
    this.#timeoutMs = timeoutMs
    this.#counters = counters
    this.#reporter = reporter
    this.#log = log
  }

  /** Starts watching a request: its deadline is `timeoutMs` from now. */
  watch(req: PeonyRequest, timeoutMs: number): void {
    this.watchUntil(req, this.#clock.now() + timeoutMs)
  }

  /** Starts watching a request with a deadline on the clock. */
  watchUntil(req: PeonyRequest, deadline: number): void {
    this.#watched.set(req, deadline)
    if (deadline < this.#at) this.#arm(deadline)
  }

  /** Stops watching a settled request; its timeout error when its deadline had passed. */
  finish(req: PeonyRequest): WorkerError | undefined {
    this.#watched.delete(req)
    const te = this.#timedOut.get(req)
    if (te !== undefined) this.#timedOut.delete(req)
    return te
  }

  /** Cancels the timer (the runtime is stopping). */
  disarm(): void {
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle)
    this.#handle = undefined
    this.#at = Infinity
  }

  #arm(deadline: number): void {
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle)
    this.#at = deadline
    this.#handle = this.#clock.setTimeout(this.#fire, Math.max(0, deadline - this.#clock.now()))
    unref(this.#handle)
  }

  #onFire(): void {
    this.#handle = undefined
    this.#at = Infinity
    const now = this.#clock.now()
    let next = Infinity
    for (const [req, deadline] of this.#watched) {
      if (deadline <= now) {
        this.#watched.delete(req)
        this.#onTimeout(req)
      } else if (deadline < next) {
        next = deadline
      }
    }
    if (next !== Infinity) this.#arm(next)
  }

  #onTimeout(req: PeonyRequest): void {
    const ms = req.route?.workTimeoutMs ?? this.#timeoutMs
    this.#counters.timedOut++
    const err = new WorkerError(WorkerErrorCode.HANDLER_TIMEOUT, `${req.route?.name ?? `task cmd ${req.taskCmd}`} has not settled after ${ms} ms`, {
      cmd: req.cmd,
      uid: req.uid,
      taskCmd: req.taskCmd,
    })
    this.#timedOut.set(req, err)
    replyFailed(req, this.#log)
    void this.#reporter.report(err, req)
  }
}
