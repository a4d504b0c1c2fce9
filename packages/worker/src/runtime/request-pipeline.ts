/**
 * The request pipeline: one request from its first user code to its outcome.
 *   1. `onTaskStart(id)`, right before the first user code; the work deadline starts here.
 *   2. preFirstRequest (first task of this runtime only; concurrent tasks wait for it), then
 *      preRequest hooks. A throwing pre-hook ends the request ('failed', -10001); `interrupt()`
 *      skips the remaining pre-hooks and the handler ('interrupted').
 *   3. the handler (or the on* hooks of a 15/20/generic task). A throw or rejection → -10001
 *      unless already replied, onError(PEONY_HANDLER_FAILED), 'failed'.
 *   4. the deadline (see watchdog.ts): 'timed-out' when it passed.
 *   5. onRequestEnd hooks, always (also after interrupt, failure and timeout), with the error.
 *   6. settlement (settlement.ts), then `onTaskDone(id, outcome)`.
 * A request with nothing but a handler that returns synchronously takes the fast path: no
 * promise is made.
 */
import type { PeonyError } from '@peony/protocol'
import type { WorkerError } from '../errors.ts'
import { isThenable, type AnyHook, type AppHookName } from '../hooks.ts'
import type { PeonyRequest } from '../request.ts'
import type { RouteHandler } from '../routes.ts'
import type { Clock, RuntimeLogger, TaskOutcome } from './contract.ts'
import { replyFailed } from './replies.ts'
import { handlerError, hookError, type ErrorReporter } from './report.ts'
import type { Settlement } from './settlement.ts'
import type { Counters } from './stats.ts'
import type { Watchdog } from './watchdog.ts'

// preFirstRequest state.
const FIRST_NONE = 0
const FIRST_RUNNING = 1
const FIRST_DONE = 2

/** What a request pipeline needs. */
export interface PipelineDeps {
  settlement: Settlement
  watchdog: Watchdog
  reporter: ErrorReporter
  counters: Counters
  clock: Clock
  /** The runtime's logger with its warn and error limited. */
  log: RuntimeLogger
  onStart: ((id: number) => void) | undefined
  /** The app's preFirstRequest hooks. */
  preFirstRequest: readonly AnyHook[]
}

/** Runs requests through their hooks and handler. */
export class RequestPipeline {
  readonly #settlement: Settlement
  readonly #watchdog: Watchdog
  readonly #reporter: ErrorReporter
  readonly #counters: Counters
  readonly #clock: Clock
  readonly #log: RuntimeLogger
  readonly #onStart: ((id: number) => void) | undefined
  readonly #preFirst: readonly AnyHook[]

  #firstState = FIRST_NONE
  #firstPromise: Promise<void> | undefined = undefined

  constructor(deps: PipelineDeps) {
    this.#settlement = deps.settlement
    this.#watchdog = deps.watchdog
    this.#reporter = deps.reporter
    this.#counters = deps.counters
    this.#clock = deps.clock
    this.#log = deps.log
    this.#onStart = deps.onStart
    this.#preFirst = deps.preFirstRequest
  }

  /**
   * Runs one request. Fast path, taken when nothing else is needed: no preFirstRequest pending, no
   * preRequest or onRequestEnd hooks, and a handler that returns synchronously: no promise is
   * made. The deadline watch starts only if the handler returns a promise (a timer cannot fire
   * while a synchronous handler runs; a blocked loop is the master's to detect). Everything else
   * takes #runSlow.
   */
  run(
    req: PeonyRequest,
    pre: readonly AnyHook[],
    end: readonly AnyHook[],
    handler: RouteHandler | undefined,
    on: readonly AnyHook[] | undefined,
    onName: AppHookName | undefined,
    timeoutMs: number,
  ): void | Promise<void> {
    if (handler === undefined || pre.length > 0 || end.length > 0 || this.#firstState !== FIRST_DONE) {
      return this.#runSlow(req, pre, end, handler, on, onName, timeoutMs)
    }
    const id = req.id
    if (this.#onStart !== undefined) {
      try {
        this.#onStart(id)
      } catch (e) {
        this.#log.error({ err: e, taskId: id }, 'onTaskStart threw')
      }
    }
    const t0 = timeoutMs > 0 ? this.#clock.now() : 0
    let r: unknown
    try {
      r = handler(req)
    } catch (e) {
      return this.#finishFailed(req, handlerError(e, req, undefined))
    }
    if (isThenable(r)) return this.#awaitHandler(req, r, t0, timeoutMs)
    this.#settlement.settle(req, 'ok')
    return undefined
  }

  /** The fast path's continuation for a handler that returned a promise. */
  async #awaitHandler(req: PeonyRequest, pending: PromiseLike<unknown>, t0: number, timeoutMs: number): Promise<void> {
    if (timeoutMs > 0) this.#watchdog.watchUntil(req, t0 + timeoutMs)
    let err: WorkerError | undefined
    try {
      await pending
    } catch (e) {
      err = handlerError(e, req, undefined)
    }
    // Same order as #runSlow: the failure (-10001, onError), then the deadline.
    let outcome: TaskOutcome = 'ok'
    if (err !== undefined) {
      outcome = 'failed'
      await this.#fail(req, err)
    }
    if (timeoutMs > 0 && this.#watchdog.finish(req) !== undefined) outcome = 'timed-out'
    this.#settlement.settle(req, outcome)
  }

  /** The fast path's end for a handler that threw synchronously. */
  async #finishFailed(req: PeonyRequest, err: WorkerError): Promise<void> {
    await this.#fail(req, err)
    this.#settlement.settle(req, 'failed')
  }

  /** A failed request: -10001 when nobody answered yet, then onError; never throws. */
  async #fail(req: PeonyRequest, err: WorkerError): Promise<void> {
    replyFailed(req, this.#log)
    try {
      await this.#reporter.report(err, req)
    } catch (e) {
      this.#log.error({ err: e, taskId: req.id }, 'internal error while reporting a failure')
    }
  }

  async #runSlow(
    req: PeonyRequest,
    pre: readonly AnyHook[],
    end: readonly AnyHook[],
    handler: RouteHandler | undefined,
    on: readonly AnyHook[] | undefined,
    onName: AppHookName | undefined,
    timeoutMs: number,
  ): Promise<void> {
    const id = req.id
    let outcome: TaskOutcome = 'ok'
    let err: WorkerError | undefined
    let settled = false
    try {
      if (this.#onStart !== undefined) {
        try {
          this.#onStart(id)
        } catch (e) {
          this.#log.error({ err: e, taskId: id }, 'onTaskStart threw')
        }
      }
      if (timeoutMs > 0) this.#watchdog.watch(req, timeoutMs)

      // 1. preFirstRequest (once per runtime; tasks arriving meanwhile wait for it).
      if (this.#firstState !== FIRST_DONE) {
        if (this.#firstState === FIRST_RUNNING) {
          await this.#firstPromise
        } else {
          const hooks = this.#preFirst
          if (hooks.length === 0) {
            this.#firstState = FIRST_DONE
          } else {
            this.#firstState = FIRST_RUNNING
            const r = this.#runPre(hooks, 'preFirstRequest', req, 0)
            if (isThenable(r)) {
              this.#firstPromise = r.then(() => undefined)
              err = await r
            } else {
              err = r
            }
            this.#firstState = FIRST_DONE
            this.#firstPromise = undefined
          }
        }
      }

      // 2. preRequest.
      if (err === undefined && !req.interrupted && pre.length > 0) {
        const r = this.#runPre(pre, 'preRequest', req, 0)
        err = isThenable(r) ? await r : r
      }

      // 3. the handler, or the on* hooks of a 15/20/generic task.
      if (err === undefined) {
        if (req.interrupted) {
          outcome = 'interrupted'
        } else if (handler !== undefined) {
          try {
            const r = handler(req)
            if (isThenable(r)) await r
          } catch (e) {
            err = handlerError(e, req, undefined)
          }
        } else if (on !== undefined) {
          for (let i = 0; i < on.length; i++) {
            try {
              const r = (on[i] as (q: PeonyRequest) => unknown)(req)
              if (isThenable(r)) await r
            } catch (e) {
              const we = handlerError(e, req, onName)
              if (err === undefined) err = we
              else await this.#reporter.report(we, req)
            }
          }
        }
      } else {
        this.#counters.hookFailed++
      }

      // 4. failure: -10001 and onError.
      if (err !== undefined) {
        outcome = 'failed'
        replyFailed(req, this.#log)
        await this.#reporter.report(err, req)
      }

      // 5. deadline.
      if (timeoutMs > 0) {
        const te = this.#watchdog.finish(req)
        if (te !== undefined) {
          outcome = 'timed-out'
          err ??= te
        }
      }

      // 6. onRequestEnd, always.
      for (let i = 0; i < end.length; i++) {
        try {
          const r = (end[i] as (q: PeonyRequest, e: PeonyError | undefined) => unknown)(req, err)
          if (isThenable(r)) await r
        } catch (e) {
          this.#counters.hookFailed++
          await this.#reporter.report(hookError('onRequestEnd', e, req), req)
        }
      }
      settled = true
      this.#settlement.settle(req, outcome)
    } catch (internal) {
      this.#log.error({ err: internal, taskId: id }, 'internal error while running a request')
      if (!settled) {
        this.#watchdog.finish(req)
        this.#settlement.done(id, 'failed')
      }
    }
  }

  /** Runs pre-hooks from `i` until one throws (→ its error), `interrupt()` is called, or the end. */
  #runPre(hooks: readonly AnyHook[], name: AppHookName, req: PeonyRequest, i: number): WorkerError | undefined | Promise<WorkerError | undefined> {
    for (; i < hooks.length; i++) {
      if (req.interrupted) return undefined
      let r: unknown
      try {
        r = (hooks[i] as (q: PeonyRequest) => unknown)(req)
      } catch (e) {
        return hookError(name, e, req)
      }
      if (isThenable(r)) return this.#runPreAsync(hooks, name, req, i, r)
    }
    return undefined
  }

  async #runPreAsync(
    hooks: readonly AnyHook[],
    name: AppHookName,
    req: PeonyRequest,
    i: number,
    pending: PromiseLike<unknown>,
  ): Promise<WorkerError | undefined> {
    try {
      await pending
    } catch (e) {
      return hookError(name, e, req)
    }
    return this.#runPre(hooks, name, req, i + 1)
  }
}
