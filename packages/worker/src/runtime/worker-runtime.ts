/**
 * WorkerRuntime: runs a PeonyApp inside one worker (a worker thread in production, the test
 * harness in tests). The host calls `start()`, then `dispatch(id, task)` for every task, then
 * `stop()`. Nothing here opens sockets or threads.
 *
 * The runtime composes one part per concept (each file says more):
 *   - lanes.ts: a lane per routing key, one task after another to full settlement; the
 *     worker's activity (onWorkerActivate / onWorkerDeactivate).
 *   - task-router.ts: from a task to a request (decode, route, session load) or to the on* hooks
 *     of a 15/20/generic task.
 *   - request-pipeline.ts: pre-hooks → handler → failure → deadline → onRequestEnd; the
 *     synchronous fast path and the async slow path.
 *   - settlement.ts: the session's output gate and dirty mark, the counters, `onTaskDone`.
 *   - watchdog.ts: the work deadline (-10001, PEONY_HANDLER_TIMEOUT, 'timed-out').
 *   - report.ts: every error logged (limited) and handed to onError; on-hooks.ts: on* hooks.
 *   - replies.ts: the runtime's own replies (-10000, -10001, -10004, -10005).
 *   - stats.ts: the counters and WorkerRuntimeStats.
 * Automatic replies go only to task cmd 10/100 with nodeId + connId.
 */
import { LogLimiter } from '@peony/log-limiter'
import { PeonyError, type RoutingKey, type Task } from '@peony/protocol'
import { compileApp, type CompiledApp, type PeonyApp } from '../app.ts'
import { systemClock } from '../clock.ts'
import { WorkerEgress } from '../egress.ts'
import { WorkerErrorCode } from '../errors.ts'
import { APP_STATE } from '../internal/symbols.ts'
import { consoleLogger } from '../logger.ts'
import { SessionManager, type SessionOptions } from '../session/session-manager.ts'
import { WorkerTimers } from '../timers.ts'
import { WorkerContext } from '../worker-context.ts'
import type { Clock, EgressSink, RuntimeHandle, RuntimeLogger, TaskOutcome, WorkerInfo } from './contract.ts'
import { type LaneJob, Lanes } from './lanes.ts'
import { OnHooks } from './on-hooks.ts'
import { ErrorReporter } from './report.ts'
import { RequestPipeline } from './request-pipeline.ts'
import { Settlement } from './settlement.ts'
import { type Counters, newCounters, type WorkerRuntimeStats } from './stats.ts'
import { TaskRouter } from './task-router.ts'
import { Watchdog } from './watchdog.ts'

export type { WorkerRuntimeStats } from './stats.ts'

/** Options of a WorkerRuntime. */
export interface WorkerRuntimeOptions {
  /** The application to run. */
  app: PeonyApp
  /** Identity of this worker. */
  info: WorkerInfo
  /** Where replies, pushes and other egress go. */
  egress: EgressSink
  /** Clock for deadlines, timers and `worker.sleep` (default: systemClock). */
  clock?: Clock | undefined
  /** Logger (default: warn/error to stderr). */
  logger?: RuntimeLogger | undefined
  /** Deadline of pre-hooks + handler per task, in ms; 0 disables it (default 30,000). A route may override it. */
  workTimeoutMs?: number | undefined
  /** Called synchronously right before the first user code of a task runs (not for tasks that run no user code). */
  onTaskStart?: ((id: number) => void) | undefined
  /** Called exactly once per dispatched task, when it has fully settled (after onRequestEnd). */
  onTaskDone?: ((id: number, outcome: TaskOutcome) => void) | undefined
  /** Storage and write-behind settings of the app's sessions; required when the app defines sessions (`app.session`). */
  sessions?: SessionOptions | undefined
}

/** Lifecycle status of a runtime. */
export type RuntimeStatus = 'created' | 'starting' | 'started' | 'stopping' | 'stopped'

const DEFAULT_WORK_TIMEOUT_MS = 30_000

/** Runs one PeonyApp for one worker. */
export class WorkerRuntime implements RuntimeHandle {
  /** The app being run. */
  readonly app: PeonyApp
  /** The worker context handed to hooks and requests. */
  readonly worker: WorkerContext

  readonly #sink: EgressSink
  readonly #onStart: ((id: number) => void) | undefined
  readonly #logger: RuntimeLogger
  /** Every warning and error of the runtime goes through it: one line per kind per 10 s (see report.ts). */
  readonly #limit: LogLimiter
  /** #logger with its warn and error limited, one kind per message (internal errors, the session manager's own lines). */
  readonly #limited: RuntimeLogger
  readonly #clock: Clock
  readonly #timeoutMs: number

  #status: RuntimeStatus = 'created'
  #compiled: CompiledApp | undefined = undefined
  #startPromise: Promise<void> | undefined = undefined
  #stopPromise: Promise<void> | undefined = undefined

  readonly #counters: Counters = newCounters()
  readonly #reporter: ErrorReporter
  readonly #onHooks: OnHooks
  readonly #lanes: Lanes
  readonly #sessions: SessionManager
  readonly #settlement: Settlement
  readonly #watchdog: Watchdog

  constructor(options: WorkerRuntimeOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('WorkerRuntime needs options')
    const { app, info, egress } = options
    if (typeof app !== 'object' || app === null || !(APP_STATE in app)) throw new TypeError('WorkerRuntime options.app must be a PeonyApp (createApp())')
    if (typeof info !== 'object' || info === null) throw new TypeError('WorkerRuntime options.info must be a WorkerInfo')
    if (typeof egress !== 'object' || egress === null || typeof egress.send !== 'function')
      throw new TypeError('WorkerRuntime options.egress must have send(msg)')
    const t = options.workTimeoutMs ?? DEFAULT_WORK_TIMEOUT_MS
    if (!Number.isFinite(t) || t < 0) throw new RangeError(`workTimeoutMs must be a finite number >= 0, got ${t}`)
    this.app = app
    this.#sink = egress
    this.#onStart = options.onTaskStart
    this.#logger = options.logger ?? consoleLogger
    this.#clock = options.clock ?? systemClock
    const limit = (this.#limit = new LogLimiter(this.#logger, { clock: this.#clock }))
    const log = this.#logger
    this.#limited = {
      debug: (obj, msg) => log.debug(obj, msg),
      info: (obj, msg) => log.info(obj, msg),
      warn: (obj, msg) => limit.warn(msg ?? '', obj, msg ?? ''),
      error: (obj, msg) => limit.error(msg ?? '', obj, msg ?? ''),
    }
    this.#timeoutMs = t
    const reporter = (this.#reporter = new ErrorReporter(limit))
    this.#onHooks = new OnHooks(this.#counters, reporter)
    const timers = new WorkerTimers(this.#clock, (err) => void reporter.report(err, undefined))
    this.worker = new WorkerContext(info, app, this.#logger, this.#clock, new WorkerEgress(egress, app.bodyCodec), timers)
    const lanes = (this.#lanes = new Lanes(this.#limited, timers, this.#onHooks, this.worker))
    const def = app[APP_STATE].session
    this.#sessions = new SessionManager(
      def,
      options.sessions,
      def === undefined
        ? undefined
        : {
            worker: this.worker,
            clock: this.#clock,
            logger: this.#limited,
            report: (err) => void reporter.report(err, undefined),
            enqueue: (key, job) => this.#enqueueJob(key, job),
            laneBusy: (key) => lanes.has(key),
          },
    )
    this.worker._setSessions(this.#sessions)
    this.#settlement = new Settlement(this.#counters, lanes, this.#sessions, timers, this.#limited, options.onTaskDone)
    this.#watchdog = new Watchdog(this.#clock, t, this.#counters, reporter, this.#limited)
  }

  /** Lifecycle status. */
  get status(): RuntimeStatus {
    return this.#status
  }

  // ─────────────────────────── lifecycle ───────────────────────────

  /**
   * Freezes the app and runs the onWorkerStart hooks (a throwing hook is logged and reported,
   * it does not fail the start). `dispatch` is allowed from the moment `start()` is called;
   * tasks wait until the start hooks have run. Calling it twice throws PEONY_ALREADY_STARTED.
   */
  start(): Promise<void> {
    if (this.#status !== 'created') return Promise.reject(new PeonyError(WorkerErrorCode.ALREADY_STARTED, 'start() was already called'))
    this.#status = 'starting'
    this.#compiled = compileApp(this.app)
    this.#reporter.setHooks(this.#compiled.hooks.onError)
    this.#startPromise = this.#doStart(this.#compiled)
    return this.#startPromise
  }

  async #doStart(c: CompiledApp): Promise<void> {
    await this.#sessions.open()
    const r = this.#onHooks.run('onWorkerStart', c.hooks.onWorkerStart, this.worker)
    if (r !== undefined) await r
    if (this.#status === 'starting') this.#status = 'started'
    this.#sessions.start()
    const pipeline = new RequestPipeline({
      settlement: this.#settlement,
      watchdog: this.#watchdog,
      reporter: this.#reporter,
      counters: this.#counters,
      clock: this.#clock,
      log: this.#limited,
      onStart: this.#onStart,
      preFirstRequest: c.hooks.preFirstRequest,
    })
    const router = new TaskRouter({
      compiled: c,
      codec: this.app.bodyCodec,
      worker: this.worker,
      sink: this.#sink,
      logger: this.#logger,
      log: this.#limited,
      timeoutMs: this.#timeoutMs,
      sessions: this.#sessions,
      lanes: this.#lanes,
      settlement: this.#settlement,
      pipeline,
      reporter: this.#reporter,
    })
    this.#lanes.open(router, c.hooks.onWorkerActivate, c.hooks.onWorkerDeactivate)
  }

  /**
   * Waits until every dispatched task has settled (and the worker went idle), cancels the
   * worker's timers, then runs the onWorkerStop hooks (blueprints first, then the app).
   * Idempotent. `dispatch` throws PEONY_WORKER_STOPPED from the moment it is called.
   */
  stop(): Promise<void> {
    return (this.#stopPromise ??= this.#doStop())
  }

  async #doStop(): Promise<void> {
    if (this.#status === 'created') {
      this.#status = 'stopped'
      this.worker.timers.close()
      return
    }
    this.#status = 'stopping'
    if (this.#startPromise !== undefined) await this.#startPromise
    if (!this.#lanes.idle) await new Promise<void>((resolve) => this.#lanes.onIdle(resolve))
    this.#watchdog.disarm()
    this.worker.timers.close()
    const c = this.#compiled as CompiledApp
    const r = this.#onHooks.run('onWorkerStop', c.hooks.onWorkerStop, this.worker)
    if (r !== undefined) await r
    // Write every dirty session (retrying storage errors) before the worker counts as stopped.
    await this.#sessions.close()
    // The counts of lines held back reach the log before the worker goes.
    this.#limit.flush()
    this.#status = 'stopped'
  }

  /** Counters and gauges (a fresh object). */
  stats(): WorkerRuntimeStats {
    const lanes = this.#lanes
    const st: WorkerRuntimeStats = { ...this.#counters, running: lanes.running, queued: lanes.queued, lanes: lanes.size }
    if (this.#sessions.enabled) st.sessions = this.#sessions.stats()
    return st
  }

  // ─────────────────────────── dispatch ───────────────────────────

  /**
   * Hands a task to the runtime. Never throws for the task's contents (a bad body becomes a
   * -10004 reply); throws PEONY_WORKER_NOT_STARTED before `start()` and PEONY_WORKER_STOPPED
   * after `stop()`. Tasks with the same routing key run one after another in dispatch order.
   */
  dispatch(id: number, task: Task): void {
    const st = this.#status
    if (st !== 'started' && st !== 'starting') {
      throw st === 'created'
        ? new PeonyError(WorkerErrorCode.WORKER_NOT_STARTED, 'dispatch() before start()')
        : new PeonyError(WorkerErrorCode.WORKER_STOPPED, 'dispatch() after stop()')
    }
    this.#lanes.push(id, task)
  }

  /** Queues internal work (a session timer) on a lane, behind its tasks. Dropped unless the runtime runs. */
  #enqueueJob(key: RoutingKey, job: LaneJob): void {
    if (this.#status !== 'started' && this.#status !== 'starting') return
    this.#lanes.pushJob(key, job)
  }
}
