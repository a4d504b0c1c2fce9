/**
 * WorkerRuntime: runs a PeonyApp inside one worker (a worker thread in production, the test
 * harness in tests). The host calls `start()`, then `dispatch(id, task)` for every task, then
 * `stop()`. Nothing here opens sockets or threads.
 *
 * Scheduling. Tasks are grouped in lanes by routing key (`routingKey(task)`: the uid, else the
 * connection, else the keyless lane ''). The tasks of one lane run strictly one after another,
 * each to full settlement (pre-hooks, handler, onRequestEnd), even when they are async; other
 * lanes proceed while one awaits. A lane with nothing queued and nothing running is deleted.
 * Sync handlers run to completion inside `dispatch`.
 *
 * One task, in order:
 *   1. task cmd 10/100: decode the body (undecodable → -10004, outcome 'bad-body'), route on the
 *      body cmd (no route → -10000, 'no-handler'). No user code runs for these two.
 *      task cmd 15/20 → onClientCreated/onClientClosed hooks; other task cmds → onTask hooks
 *      (none registered → 'no-handler', nothing runs).
 *   2. `onTaskStart(id)`, right before the first user code; the work deadline starts here.
 *   3. preFirstRequest (first task of this runtime only; concurrent tasks wait for it), then
 *      preRequest hooks. A throwing pre-hook ends the request ('failed', -10001); `interrupt()`
 *      skips the remaining pre-hooks and the handler ('interrupted').
 *   4. the handler (or the on* hooks of a 15/20/generic task). A throw or rejection → -10001
 *      unless already replied, onError(PEONY_HANDLER_FAILED), 'failed'.
 *   5. onRequestEnd hooks, always (also after interrupt, failure and timeout), with the error.
 *   6. `onTaskDone(id, outcome)`.
 * Automatic replies (-10000, -10001, -10004) go only to task cmd 10/100 with nodeId + connId.
 *
 * Work timeout: a task whose pre-hooks + handler have not settled `workTimeoutMs` after step 2
 * is answered -10001 (if not replied), counted in `timedOut`, logged and reported to onError
 * (PEONY_HANDLER_TIMEOUT). Its lane keeps waiting until it settles; its outcome is 'timed-out'.
 *
 * Activity: onWorkerActivate runs when the worker goes from idle to busy (tasks wait for it);
 * onWorkerDeactivate when nothing is queued or running at the end of the current microtask turn
 * (so a batch dispatched in one go gives one activate/deactivate pair). Tasks dispatched while
 * deactivate hooks run wait for them, then for a new activation.
 */
import { LogLimiter } from '@peony/log-limiter'
import {
  type BodyCodec,
  hasUid,
  type Int64,
  isPeonyError,
  PeonyError,
  ReplyCode,
  type RequestBody,
  routingKey,
  type RoutingKey,
  type Task,
  type Uid,
} from '@peony/protocol'
import { compileApp, type CompiledApp, type PeonyApp } from '../app.ts'
import { systemClock } from '../clock.ts'
import { WorkerEgress } from '../egress.ts'
import { WorkerError, WorkerErrorCode } from '../errors.ts'
import { isThenable, type AnyHook, type AppHookName } from '../hooks.ts'
import { APP_STATE } from '../internal/symbols.ts'
import { consoleLogger } from '../logger.ts'
import { PeonyRequest } from '../request.ts'
import type { RouteHandler } from '../routes.ts'
import { GONE, type Session } from '../session/session.ts'
import { errorSite } from './error-site.ts'
import { SessionManager, type SessionOptions, type SessionStats } from '../session/session-manager.ts'
import { WorkerTimers } from '../timers.ts'
import { WorkerContext } from '../worker-context.ts'
import type { Clock, EgressSink, RuntimeHandle, RuntimeLogger, TaskOutcome, WorkerInfo } from './contract.ts'

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

/** Counters and gauges of a runtime. Every settled task counts in `handled` and in exactly one outcome counter. */
export interface WorkerRuntimeStats {
  /** Tasks settled. */
  handled: number
  /** Outcome 'ok'. */
  ok: number
  /** Outcome 'failed': a handler, a task's on-hook or a pre-hook threw. */
  failed: number
  /** Outcome 'no-handler': unknown body cmd (answered -10000), or a generic task with no onTask hook. */
  noHandler: number
  /** Outcome 'bad-body': undecodable body (answered -10004). */
  badBody: number
  /** Tasks that passed their work deadline (counted when it passes; their outcome is 'timed-out'). */
  timedOut: number
  /** Outcome 'interrupted'. */
  interrupted: number
  /** Outcome 'load-failed': the player's session could not be loaded (answered -10005). */
  loadFailed: number
  /** Hook calls that threw or rejected (pre-hooks, onRequestEnd, worker hooks), except the onClientCreated/onClientClosed/onTask hooks serving a task, which count as `failed`. onError hooks are only logged. */
  hookFailed: number
  /** Tasks started and not yet settled. */
  running: number
  /** Tasks dispatched and not yet started. */
  queued: number
  /** Lanes (routing keys) with something queued or running. */
  lanes: number
  /** The sessions' counters, when the app defines sessions. */
  sessions?: SessionStats
}

/** Lifecycle status of a runtime. */
export type RuntimeStatus = 'created' | 'starting' | 'started' | 'stopping' | 'stopped'

const EMPTY = new Uint8Array(0)
const DEFAULT_WORK_TIMEOUT_MS = 30_000

// Activity phases.
const GATED = 0 // not started yet: tasks queue
const IDLE = 1
const ACTIVATING = 2
const BUSY = 3
const DEACTIVATING = 4

// preFirstRequest state.
const FIRST_NONE = 0
const FIRST_RUNNING = 1
const FIRST_DONE = 2

/** One routing key's queue: `q` holds id, task, id, task, … from `head` on. */
interface Lane {
  readonly key: RoutingKey
  q: unknown[]
  head: number
  active: boolean
}

type Counters = Omit<WorkerRuntimeStats, 'running' | 'queued' | 'lanes' | 'sessions'>

/** Internal work on a lane (session timers): queued with id -1. */
type LaneJob = () => unknown

const OUTCOME_COUNTER: Record<TaskOutcome, keyof Counters | undefined> = {
  ok: 'ok',
  failed: 'failed',
  'no-handler': 'noHandler',
  'bad-body': 'badBody',
  'timed-out': undefined, // counted when the deadline passes
  interrupted: 'interrupted',
  'load-failed': 'loadFailed',
}

function hasConnection(task: Task): boolean {
  return task.nodeId !== undefined && task.connId !== undefined
}

/** True when the runtime answers this task itself on errors: a 10/100 from a client connection. */
function autoReplies(task: Task): boolean {
  return (task.cmd === 10 || task.cmd === 100) && hasConnection(task)
}

function logInt(v: Int64 | string | undefined): number | string | undefined {
  return typeof v === 'bigint' ? v.toString() : v
}

function unref(handle: unknown): void {
  if (typeof handle === 'object' && handle !== null) (handle as { unref?: () => void }).unref?.()
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** Runs one PeonyApp for one worker. */
export class WorkerRuntime implements RuntimeHandle {
  /** The app being run. */
  readonly app: PeonyApp
  /** The worker context handed to hooks and requests. */
  readonly worker: WorkerContext

  readonly #sink: EgressSink
  readonly #logger: RuntimeLogger
  /** Every warning and error of the runtime goes through it: one line per kind per 10 s (see #report). */
  readonly #limit: LogLimiter
  /** #logger with its warn and error limited, one kind per message (internal errors, the session manager's own lines). */
  readonly #limited: RuntimeLogger
  readonly #clock: Clock
  readonly #codec: BodyCodec
  readonly #timeoutMs: number
  readonly #onStart: ((id: number) => void) | undefined
  readonly #onDone: ((id: number, outcome: TaskOutcome) => void) | undefined

  #status: RuntimeStatus = 'created'
  #compiled: CompiledApp | undefined = undefined
  #startPromise: Promise<void> | undefined = undefined
  #stopPromise: Promise<void> | undefined = undefined

  readonly #lanes = new Map<RoutingKey, Lane>()
  #phase = GATED
  #queued = 0
  #running = 0
  #doneCount = 0
  #idleCheckScheduled = false
  readonly #idleCheck = (): void => {
    this.#idleCheckScheduled = false
    if (this.#phase === BUSY && this.#running === 0 && this.#queued === 0) this.#deactivate()
  }
  #idleWaiters: (() => void)[] = []
  readonly #counters: Counters = { handled: 0, ok: 0, failed: 0, noHandler: 0, badBody: 0, timedOut: 0, interrupted: 0, loadFailed: 0, hookFailed: 0 }
  readonly #sessions: SessionManager
  /** Ids of queued tasks whose session load failed while they waited (answered -10005 when their turn comes). */
  readonly #loadFailed = new Set<number>()
  /** Requests whose outputs an output gate holds, by task id, until they settle. */
  readonly #holding = new Map<number, PeonyRequest>()

  #firstState = FIRST_NONE
  #firstPromise: Promise<void> | undefined = undefined

  /** Requests under a deadline → deadline (ms on the clock). */
  readonly #watched = new Map<PeonyRequest, number>()
  /** Requests whose deadline passed → the timeout error. */
  readonly #timedOut = new Map<PeonyRequest, WorkerError>()
  #wdHandle: unknown = undefined
  #wdAt = Infinity
  readonly #wdFire = (): void => this.#onWatchdog()

  constructor(options: WorkerRuntimeOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('WorkerRuntime needs options')
    const { app, info, egress } = options
    if (typeof app !== 'object' || app === null || !(APP_STATE in app)) throw new TypeError('WorkerRuntime options.app must be a PeonyApp (createApp())')
    if (typeof info !== 'object' || info === null) throw new TypeError('WorkerRuntime options.info must be a WorkerInfo')
    if (typeof egress !== 'object' || egress === null || typeof egress.send !== 'function') throw new TypeError('WorkerRuntime options.egress must have send(msg)')
    const t = options.workTimeoutMs ?? DEFAULT_WORK_TIMEOUT_MS
    if (!Number.isFinite(t) || t < 0) throw new RangeError(`workTimeoutMs must be a finite number >= 0, got ${t}`)
    this.app = app
    this.#sink = egress
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
    this.#codec = app.bodyCodec
    this.#timeoutMs = t
    this.#onStart = options.onTaskStart
    this.#onDone = options.onTaskDone
    const timers = new WorkerTimers(this.#clock, (err) => void this.#report(err, undefined))
    this.worker = new WorkerContext(info, app, this.#logger, this.#clock, new WorkerEgress(egress, app.bodyCodec), timers)
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
            report: (err) => void this.#report(err, undefined),
            enqueue: (key, job) => this.#enqueueJob(key, job),
            laneBusy: (key) => this.#lanes.has(key),
          },
    )
    this.worker._setSessions(this.#sessions)
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
    this.#startPromise = this.#doStart(this.#compiled)
    return this.#startPromise
  }

  async #doStart(c: CompiledApp): Promise<void> {
    await this.#sessions.open()
    const r = this.#runOnHooks('onWorkerStart', c.hooks.onWorkerStart, this.worker)
    if (r !== undefined) await r
    if (this.#status === 'starting') this.#status = 'started'
    this.#sessions.start()
    this.#phase = IDLE
    if (this.#queued > 0) this.#activate()
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
    if (this.#phase !== IDLE) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
    this.#disarmWatchdog()
    this.worker.timers.close()
    const c = this.#compiled as CompiledApp
    const r = this.#runOnHooks('onWorkerStop', c.hooks.onWorkerStop, this.worker)
    if (r !== undefined) await r
    // Write every dirty session (retrying storage errors) before the worker counts as stopped.
    await this.#sessions.close()
    // The counts of lines held back reach the log before the worker goes.
    this.#limit.flush()
    this.#status = 'stopped'
  }

  /** Counters and gauges (a fresh object). */
  stats(): WorkerRuntimeStats {
    const st: WorkerRuntimeStats = { ...this.#counters, running: this.#running, queued: this.#queued, lanes: this.#lanes.size }
    if (this.#sessions.enabled) st.sessions = this.#sessions.stats()
    return st
  }

  /** Queues internal work (a session timer) on a lane, behind its tasks. Dropped unless the runtime runs. */
  #enqueueJob(key: RoutingKey, job: LaneJob): void {
    if (this.#status !== 'started' && this.#status !== 'starting') return
    let lane = this.#lanes.get(key)
    if (lane === undefined) {
      lane = { key, q: [], head: 0, active: false }
      this.#lanes.set(key, lane)
    }
    lane.q.push(-1, job)
    this.#queued++
    if (lane.active) return
    if (this.#phase === BUSY) this.#drain(lane)
    else if (this.#phase === IDLE) this.#activate()
  }

  /** Runs a lane job; undefined when it finished synchronously, else a promise that never rejects. */
  #runJob(job: LaneJob): Promise<void> | undefined {
    let r: unknown
    try {
      r = job()
    } catch (err) {
      this.#limited.error({ err }, 'internal error in a lane job')
    }
    if (isThenable(r)) {
      return Promise.resolve(r).then(
        () => this.#jobDone(),
        (err: unknown) => {
          this.#limited.error({ err }, 'internal error in a lane job')
          this.#jobDone()
        },
      )
    }
    this.#jobDone()
    return undefined
  }

  #jobDone(): void {
    this.worker.timers.kick()
    this.#running--
    if (this.#running === 0 && this.#queued === 0) this.#scheduleIdleCheck()
  }

  // ─────────────────────────── dispatch and lanes ───────────────────────────

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
    const key = routingKey(task)
    let lane = this.#lanes.get(key)
    if (lane === undefined) {
      lane = { key, q: [], head: 0, active: false }
      this.#lanes.set(key, lane)
    }
    lane.q.push(id, task)
    this.#queued++
    if (lane.active) return
    const ph = this.#phase
    if (ph === BUSY) this.#drain(lane)
    else if (ph === IDLE) this.#activate()
    // GATED / ACTIVATING / DEACTIVATING: the lane starts when the worker is busy again.
  }

  /**
   * Runs a lane's tasks one after another. Synchronous while tasks settle synchronously (no
   * promise, no microtask hop); the first task that returns a promise continues the lane in
   * #drainAfter once it settles.
   */
  #drain(lane: Lane): void {
    lane.active = true
    for (;;) {
      const q = lane.q
      const i = lane.head
      if (i >= q.length) break
      const id = q[i] as number
      const task = q[i + 1] as Task
      q[i] = undefined
      q[i + 1] = undefined
      lane.head = i + 2
      if (lane.head >= 2048 && lane.head * 2 >= q.length) {
        // A lane that never empties: drop the consumed prefix now and then.
        lane.q = q.slice(lane.head)
        lane.head = 0
      }
      this.#queued--
      this.#running++
      if (id < 0) {
        const jr = this.#runJob(task as unknown as LaneJob)
        if (jr !== undefined) {
          void this.#drainAfter(lane, jr)
          return
        }
        continue
      }
      const before = this.#doneCount
      let r: void | Promise<void>
      try {
        r = this.#runTask(id, task)
      } catch (err) {
        // Not reachable by design (runTask catches user errors); never lose a task's settlement.
        this.#limited.error({ err, taskId: id }, 'internal error while running a task')
        if (this.#doneCount === before) this.#done(id, 'failed')
        continue
      }
      if (this.#doneCount === before && r !== undefined) {
        void this.#drainAfter(lane, r)
        return
      }
    }
    lane.q = []
    lane.head = 0
    lane.active = false
    this.#lanes.delete(lane.key)
  }

  async #drainAfter(lane: Lane, pending: Promise<void>): Promise<void> {
    await pending
    this.#drain(lane)
  }

  #activate(): void {
    this.#phase = ACTIVATING
    this.#phaseHooks('onWorkerActivate', this.#becomeBusy)
  }

  /** Runs the activate/deactivate hooks (if any), then `next`, synchronously when they are. */
  #phaseHooks(name: 'onWorkerActivate' | 'onWorkerDeactivate', next: () => void): void {
    const hooks = (this.#compiled as CompiledApp).hooks[name]
    const r = hooks.length === 0 ? undefined : this.#runOnHooks(name, hooks, this.worker)
    if (r === undefined) next()
    else void r.then(next)
  }

  readonly #becomeBusy = (): void => {
    this.#phase = BUSY
    for (const lane of this.#lanes.values()) if (!lane.active) this.#drain(lane)
    if (this.#running === 0 && this.#queued === 0) this.#scheduleIdleCheck()
  }

  #scheduleIdleCheck(): void {
    if (this.#idleCheckScheduled) return
    this.#idleCheckScheduled = true
    queueMicrotask(this.#idleCheck)
  }

  #deactivate(): void {
    this.#phase = DEACTIVATING
    this.#phaseHooks('onWorkerDeactivate', this.#afterDeactivate)
  }

  readonly #afterDeactivate = (): void => {
    if (this.#queued > 0) {
      this.#activate()
      return
    }
    this.#phase = IDLE
    const waiters = this.#idleWaiters
    if (waiters.length > 0) {
      this.#idleWaiters = []
      for (const w of waiters) w()
    }
  }

  /**
   * Gives a request its session, and the session's output gate when the route is gated or the
   * session already holds output (every later output of a session waits behind a held one).
   */
  #attach(req: PeonyRequest, s: Session | undefined): void {
    req._session = s
    if (s === undefined || (s._flags & GONE) !== 0) return
    const gated = req.route !== undefined && (req.route.gate === undefined ? this.#sessions.gateDefault : req.route.gate === 'stored')
    if (!gated && s._held === undefined) return
    req._hold = s
    if (gated) req._barrier = this.#sessions.gateBegin(s)
    this.#holding.set(req.id, req)
  }

  /** Settles a task: counters, onTaskDone, idle detection. Called exactly once per task. */
  #done(id: number, outcome: TaskOutcome): void {
    this.worker.timers.kick()
    this.#running--
    this.#doneCount++
    const c = this.#counters
    c.handled++
    const k = OUTCOME_COUNTER[outcome]
    if (k !== undefined) c[k]++
    const held = this.#holding.size > 0 ? this.#holding.get(id) : undefined
    if (held !== undefined) {
      // The host hears of it once the request's outputs left the gate: a worker that dies
      // holding them leaves the task started, and the master answers it -10001.
      this.#holding.delete(id)
      this.#sessions.gateSettle(held._hold as Session, held._barrier, () => this.#notifyDone(id, outcome))
    } else this.#notifyDone(id, outcome)
    if (this.#running === 0 && this.#queued === 0) this.#scheduleIdleCheck()
  }

  #notifyDone(id: number, outcome: TaskOutcome): void {
    if (this.#onDone === undefined) return
    try {
      this.#onDone(id, outcome)
    } catch (err) {
      this.#limited.error({ err, taskId: id }, 'onTaskDone threw')
    }
  }

  // ─────────────────────────── one task ───────────────────────────

  #runTask(id: number, task: Task): void | Promise<void> {
    const c = this.#compiled as CompiledApp
    const tc = task.cmd
    if (tc === 10 || tc === 100) {
      const bytes = task.body ?? EMPTY
      let body: RequestBody
      try {
        body = this.#codec.decodeRequest(bytes)
      } catch (err) {
        this.#rejectBody(id, task, bytes, err)
        return
      }
      const route = c.routes.get(body.cmd)
      if (route === undefined) {
        this.#logger.debug({ taskId: id, cmd: body.cmd, uid: logInt(task.uid) }, 'no handler for body cmd')
        if (hasConnection(task)) this.#autoReply(id, task, body.cmd, body.sn, ReplyCode.NO_HANDLER)
        this.#done(id, 'no-handler')
        return
      }
      const req = new PeonyRequest(id, task, this.worker, route.info, body)
      const timeoutMs = route.info.workTimeoutMs ?? this.#timeoutMs
      if (this.#sessions.enabled && hasUid(task)) {
        const failed = this.#loadFailed.size > 0 && this.#loadFailed.delete(id)
        const lane = routingKey(task)
        if (route.info.session) {
          if (failed) {
            this.#answerLoadFailed(id, task, body)
            return
          }
          const s = this.#sessions.touch(lane)
          if (s === undefined) return this.#loadThenRun(req, lane, task.uid as Uid, route.pre, route.end, timeoutMs)
          this.#attach(req, s)
        } else {
          this.#attach(req, this.#sessions.touch(lane))
        }
      }
      return this.#runRequest(req, route.pre, route.end, route.info.handler, undefined, undefined, timeoutMs)
    }
    let on: readonly AnyHook[]
    let onName: AppHookName
    if (tc === 15) {
      on = c.hooks.onClientCreated
      onName = 'onClientCreated'
    } else if (tc === 20) {
      on = c.hooks.onClientClosed
      onName = 'onClientClosed'
    } else {
      on = c.hooks.onTask
      onName = 'onTask'
      if (on.length === 0) {
        this.#logger.debug({ taskId: id, taskCmd: tc }, 'no onTask hook for task cmd')
        this.#done(id, 'no-handler')
        return
      }
    }
    const req = new PeonyRequest(id, task, this.worker, undefined, undefined)
    if (this.#sessions.enabled && hasUid(task)) {
      // Client created/closed and generic tasks see a resident session but never load one.
      const lane = routingKey(task)
      if (tc === 20) {
        this.#attach(req, this.#sessions.residentAt(lane))
        this.#sessions.clientClosed(lane)
      } else {
        this.#attach(req, this.#sessions.touch(lane))
      }
    }
    return this.#runRequest(req, c.hooks.preRequest, c.hooks.onRequestEnd, undefined, on, onName, this.#timeoutMs)
  }

  /**
   * The first task of a player whose session is not resident: loads it (the lane waits), fires
   * its overdue durable timers, then runs the request. A failed load answers this task and every
   * task queued behind it on the lane with -10005 (outcome 'load-failed').
   */
  async #loadThenRun(req: PeonyRequest, lane: RoutingKey, uid: Uid, pre: readonly AnyHook[], end: readonly AnyHook[], timeoutMs: number): Promise<void> {
    let s: Session
    try {
      s = await this.#sessions.load(lane, uid)
    } catch (err) {
      void this.#report(err as PeonyError, req)
      const l = this.#lanes.get(lane)
      if (l !== undefined) for (let i = l.head; i < l.q.length; i += 2) if ((l.q[i] as number) >= 0) this.#loadFailed.add(l.q[i] as number)
      this.#answerLoadFailed(req.id, req.task, req.body as RequestBody)
      return
    }
    const r = this.#sessions.fireDue(s)
    if (r !== undefined) await r
    this.#attach(req, s)
    const rr = this.#runRequest(req, pre, end, req.route!.handler, undefined, undefined, timeoutMs)
    if (rr !== undefined) await rr
  }

  /** -10005 for a request whose session could not be loaded. */
  #answerLoadFailed(id: number, task: Task, body: RequestBody): void {
    if (hasConnection(task)) this.#autoReply(id, task, body.cmd, body.sn, ReplyCode.STATE_LOAD_FAILED)
    this.#done(id, 'load-failed')
  }

  /**
   * Settles a request: the automatic dirty mark of the session it was handed (its route's, the
   * resident one of a `{ session: false }` route or of an on-hook task), then #done.
   */
  #settle(req: PeonyRequest, outcome: TaskOutcome): void {
    const s = req._session
    if (s !== undefined) this.#sessions.afterHandler(s)
    this.#done(req.id, outcome)
  }

  #rejectBody(id: number, task: Task, bytes: Uint8Array, err: unknown): void {
    this.#logger.debug({ taskId: id, uid: logInt(task.uid), err }, 'request body not decodable')
    if (hasConnection(task)) {
      let peek: { cmd?: number | string; sn?: Int64 } = {}
      try {
        peek = this.#codec.peekRequest(bytes)
      } catch {
        // best effort
      }
      this.#autoReply(id, task, peek.cmd, peek.sn, ReplyCode.BODY_UNDECODABLE)
    }
    this.#done(id, 'bad-body')
  }

  /** Sends one of the runtime's own error replies; never throws. */
  #autoReply(id: number, task: Task, cmd: number | string | undefined, sn: Int64 | undefined, ret: number): void {
    try {
      const body = this.#codec.encodeReply({ cmd, sn, ret })
      this.#sink.send({ cmd: 220, nodeId: task.nodeId as number, connId: task.connId as Int64, tag: task.tag, ret, body }, id, true)
    } catch (err) {
      this.#limited.error({ err, taskId: id, ret }, 'could not send an error reply')
    }
  }

  /**
   * Runs one request. Fast path, taken when nothing else is needed: no preFirstRequest pending, no
   * preRequest or onRequestEnd hooks, and a handler that returns synchronously: no promise is
   * made. The deadline watch starts only if the handler returns a promise (a timer cannot fire
   * while a synchronous handler runs; a blocked loop is the master's to detect). Everything else
   * takes #runRequestSlow.
   */
  #runRequest(
    req: PeonyRequest,
    pre: readonly AnyHook[],
    end: readonly AnyHook[],
    handler: RouteHandler | undefined,
    on: readonly AnyHook[] | undefined,
    onName: AppHookName | undefined,
    timeoutMs: number,
  ): void | Promise<void> {
    if (handler === undefined || pre.length > 0 || end.length > 0 || this.#firstState !== FIRST_DONE) {
      return this.#runRequestSlow(req, pre, end, handler, on, onName, timeoutMs)
    }
    const id = req.id
    if (this.#onStart !== undefined) {
      try {
        this.#onStart(id)
      } catch (e) {
        this.#limited.error({ err: e, taskId: id }, 'onTaskStart threw')
      }
    }
    const t0 = timeoutMs > 0 ? this.#clock.now() : 0
    let r: unknown
    try {
      r = handler(req)
    } catch (e) {
      return this.#finishFailed(req, this.#handlerError(e, req, undefined))
    }
    if (isThenable(r)) return this.#awaitHandler(req, r, t0, timeoutMs)
    this.#settle(req, 'ok')
    return undefined
  }

  /** The fast path's continuation for a handler that returned a promise. */
  async #awaitHandler(req: PeonyRequest, pending: PromiseLike<unknown>, t0: number, timeoutMs: number): Promise<void> {
    if (timeoutMs > 0) this.#watchUntil(req, t0 + timeoutMs)
    let err: WorkerError | undefined
    try {
      await pending
    } catch (e) {
      err = this.#handlerError(e, req, undefined)
    }
    // Same order as #runRequestSlow: the failure (-10001, onError), then the deadline.
    let outcome: TaskOutcome = 'ok'
    if (err !== undefined) {
      outcome = 'failed'
      await this.#fail(req, err)
    }
    if (timeoutMs > 0) {
      this.#watched.delete(req)
      if (this.#timedOut.has(req)) {
        this.#timedOut.delete(req)
        outcome = 'timed-out'
      }
    }
    this.#settle(req, outcome)
  }

  /** The fast path's end for a handler that threw synchronously. */
  async #finishFailed(req: PeonyRequest, err: WorkerError): Promise<void> {
    await this.#fail(req, err)
    this.#settle(req, 'failed')
  }

  /** A failed request: -10001 when nobody answered yet, then onError; never throws. */
  async #fail(req: PeonyRequest, err: WorkerError): Promise<void> {
    this.#replyFailed(req)
    try {
      await this.#report(err, req)
    } catch (e) {
      this.#limited.error({ err: e, taskId: req.id }, 'internal error while reporting a failure')
    }
  }

  async #runRequestSlow(
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
          this.#limited.error({ err: e, taskId: id }, 'onTaskStart threw')
        }
      }
      if (timeoutMs > 0) this.#watch(req, timeoutMs)

      // 1. preFirstRequest (once per runtime; tasks arriving meanwhile wait for it).
      if (this.#firstState !== FIRST_DONE) {
        if (this.#firstState === FIRST_RUNNING) {
          await this.#firstPromise
        } else {
          const hooks = (this.#compiled as CompiledApp).hooks.preFirstRequest
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
            err = this.#handlerError(e, req, undefined)
          }
        } else if (on !== undefined) {
          for (let i = 0; i < on.length; i++) {
            try {
              const r = (on[i] as (q: PeonyRequest) => unknown)(req)
              if (isThenable(r)) await r
            } catch (e) {
              const we = this.#handlerError(e, req, onName)
              if (err === undefined) err = we
              else await this.#report(we, req)
            }
          }
        }
      } else {
        this.#counters.hookFailed++
      }

      // 4. failure: -10001 and onError.
      if (err !== undefined) {
        outcome = 'failed'
        this.#replyFailed(req)
        await this.#report(err, req)
      }

      // 5. deadline.
      if (timeoutMs > 0) {
        this.#watched.delete(req)
        const te = this.#timedOut.get(req)
        if (te !== undefined) {
          this.#timedOut.delete(req)
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
          await this.#report(this.#hookError('onRequestEnd', e, req), req)
        }
      }
      settled = true
      this.#settle(req, outcome)
    } catch (internal) {
      this.#limited.error({ err: internal, taskId: id }, 'internal error while running a request')
      if (!settled) {
        this.#watched.delete(req)
        this.#timedOut.delete(req)
        this.#done(id, 'failed')
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
        return this.#hookError(name, e, req)
      }
      if (isThenable(r)) return this.#runPreAsync(hooks, name, req, i, r)
    }
    return undefined
  }

  async #runPreAsync(hooks: readonly AnyHook[], name: AppHookName, req: PeonyRequest, i: number, pending: PromiseLike<unknown>): Promise<WorkerError | undefined> {
    try {
      await pending
    } catch (e) {
      return this.#hookError(name, e, req)
    }
    return this.#runPre(hooks, name, req, i + 1)
  }

  /** Answers -10001 for a failed or timed-out request when it can and nobody has answered yet. */
  #replyFailed(req: PeonyRequest): void {
    if (req.replied || !autoReplies(req.task)) return
    try {
      req.reply(undefined, ReplyCode.HANDLER_FAILED)
    } catch (e) {
      this.#limited.error({ err: e, req: req.toJSON() }, 'could not send the -10001 reply')
    }
  }

  #handlerError(e: unknown, req: PeonyRequest, hook: AppHookName | undefined): WorkerError {
    const where = hook ?? `handler ${req.route?.name ?? String(req.cmd)}`
    return new WorkerError(WorkerErrorCode.HANDLER_FAILED, `${where} failed: ${messageOf(e)}`, {
      cmd: req.cmd,
      uid: req.uid,
      taskCmd: req.taskCmd,
      hook,
      cause: e,
    })
  }

  #hookError(hook: AppHookName, e: unknown, req: PeonyRequest | undefined): WorkerError {
    return new WorkerError(WorkerErrorCode.HOOK_FAILED, `hook ${hook} failed: ${messageOf(e)}`, {
      cmd: req?.cmd,
      uid: req?.uid,
      taskCmd: req?.taskCmd,
      hook,
      cause: e,
    })
  }

  // ─────────────────────────── hooks and errors ───────────────────────────

  /**
   * Runs on* hooks in order; a throwing one is counted, logged and reported, and the next still
   * runs. Returns undefined when everything ran synchronously, else a promise that never rejects.
   */
  #runOnHooks(name: AppHookName, hooks: readonly AnyHook[], arg: unknown, i = 0): Promise<void> | undefined {
    for (; i < hooks.length; i++) {
      let r: unknown
      try {
        r = (hooks[i] as (a: unknown) => unknown)(arg)
      } catch (e) {
        this.#counters.hookFailed++
        void this.#report(this.#hookError(name, e, undefined), undefined)
        continue
      }
      if (isThenable(r)) return this.#runOnHooksAsync(name, hooks, arg, i, r)
    }
    return undefined
  }

  async #runOnHooksAsync(name: AppHookName, hooks: readonly AnyHook[], arg: unknown, i: number, pending: PromiseLike<unknown>): Promise<void> {
    try {
      await pending
    } catch (e) {
      this.#counters.hookFailed++
      await this.#report(this.#hookError(name, e, undefined), undefined)
    }
    const r = this.#runOnHooks(name, hooks, arg, i + 1)
    if (r !== undefined) await r
  }

  /**
   * Logs an error and runs the onError hooks (a throwing onError hook is only logged). Never
   * rejects. Every error reaches the hooks; the log gets one line per kind per 10 s (the first
   * with its stack, then a count: see LogLimiter). A kind is the code, the route or hook for
   * handler and hook failures (one failing route does not hide another), and the code of the
   * cause (a storage outage and a corrupt record are different load failures).
   */
  #report(err: PeonyError, req: PeonyRequest | undefined): Promise<void> | undefined {
    const level = err.code === WorkerErrorCode.HANDLER_TIMEOUT ? 'warn' : 'error'
    const cause = (err as { cause?: unknown }).cause
    const causeCode = isPeonyError(cause) ? cause.code : undefined
    const hook = (err as { hook?: string }).hook
    const where = hook ?? (err.code === WorkerErrorCode.HANDLER_FAILED || err.code === WorkerErrorCode.HANDLER_TIMEOUT ? req?.route?.name : undefined)
    // A handler's or hook's own error is the line's `err` (its stack and cause chain, with the
    // app's file and line as `at`); the runtime's WorkerError around it adds only its code.
    const own = (err.code === WorkerErrorCode.HANDLER_FAILED || err.code === WorkerErrorCode.HOOK_FAILED) && cause instanceof Error ? cause : undefined
    const at = own === undefined ? undefined : errorSite(own)
    const shown = own ?? err
    const obj: Record<string, unknown> = { err: shown, code: err.code }
    if (causeCode !== undefined) obj.causeCode = causeCode
    if (where !== undefined && own !== undefined) obj[hook === undefined ? 'route' : 'hook'] = where
    if (at !== undefined) obj.at = at
    obj.req = req?.toJSON()
    let kind: string = err.code
    if (where !== undefined) kind += ` ${where}`
    if (causeCode !== undefined) kind += ` ${causeCode}`
    this.#limit[level](kind, obj, err.message)
    const hooks = this.#compiled?.hooks.onError
    if (hooks === undefined || hooks.length === 0) return undefined
    return this.#runErrorHooks(hooks, err, req, 0)
  }

  #runErrorHooks(hooks: readonly AnyHook[], err: PeonyError, req: PeonyRequest | undefined, i: number): Promise<void> | undefined {
    for (; i < hooks.length; i++) {
      let r: unknown
      try {
        r = (hooks[i] as (e: PeonyError, q: PeonyRequest | undefined) => unknown)(err, req)
      } catch (e) {
        this.#limit.error('onError hook', { err: e, code: WorkerErrorCode.HOOK_FAILED, hook: 'onError' }, 'onError hook threw')
        continue
      }
      if (isThenable(r)) {
        const next = i + 1
        return Promise.resolve(r).then(
          () => this.#runErrorHooks(hooks, err, req, next),
          (e: unknown) => {
            this.#limit.error('onError hook', { err: e, code: WorkerErrorCode.HOOK_FAILED, hook: 'onError' }, 'onError hook rejected')
            return this.#runErrorHooks(hooks, err, req, next)
          },
        )
      }
    }
    return undefined
  }

  // ─────────────────────────── work deadline ───────────────────────────

  #watch(req: PeonyRequest, timeoutMs: number): void {
    this.#watchUntil(req, this.#clock.now() + timeoutMs)
  }

  #watchUntil(req: PeonyRequest, deadline: number): void {
    this.#watched.set(req, deadline)
    if (deadline < this.#wdAt) this.#arm(deadline)
  }

  #arm(deadline: number): void {
    if (this.#wdHandle !== undefined) this.#clock.clearTimeout(this.#wdHandle)
    this.#wdAt = deadline
    this.#wdHandle = this.#clock.setTimeout(this.#wdFire, Math.max(0, deadline - this.#clock.now()))
    unref(this.#wdHandle)
  }

  #disarmWatchdog(): void {
    if (this.#wdHandle !== undefined) this.#clock.clearTimeout(this.#wdHandle)
    this.#wdHandle = undefined
    this.#wdAt = Infinity
  }

  #onWatchdog(): void {
    this.#wdHandle = undefined
    this.#wdAt = Infinity
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
    this.#replyFailed(req)
    void this.#report(err, req)
  }
}
