/**
 * From a task to a request. Task cmd 10/100: decode the body (undecodable → -10004, outcome
 * 'bad-body'), route on the body cmd (no route → -10000, 'no-handler'); no user code runs for
 * these two. Task cmd 15/20 → the onClientCreated/onClientClosed hooks; other task cmds → the
 * onTask hooks (none registered → 'no-handler', nothing runs). A player's request gets its
 * session, loaded first when it is not resident (a failed load → -10005, 'load-failed', for the
 * task and every task queued behind it on the lane). Then the request pipeline runs it.
 */
import {
  type BodyCodec,
  hasUid,
  type Int64,
  type PeonyError,
  ReplyCode,
  type RequestBody,
  routingKey,
  type RoutingKey,
  type Task,
  type Uid,
} from '@peony/protocol'
import type { CompiledApp } from '../app.ts'
import type { AnyHook, AppHookName } from '../hooks.ts'
import { PeonyRequest } from '../request.ts'
import type { SessionManager } from '../session/session-manager.ts'
import type { Session } from '../session/session.ts'
import type { WorkerContext } from '../worker-context.ts'
import type { EgressSink, RuntimeLogger } from './contract.ts'
import type { Lanes, TaskRunner } from './lanes.ts'
import { autoReply, hasConnection } from './replies.ts'
import type { ErrorReporter } from './report.ts'
import type { RequestPipeline } from './request-pipeline.ts'
import type { Settlement } from './settlement.ts'

const EMPTY = new Uint8Array(0)

function logInt(v: Int64 | string | undefined): number | string | undefined {
  return typeof v === 'bigint' ? v.toString() : v
}

/** What a task router needs. */
export interface TaskRouterDeps {
  compiled: CompiledApp
  /** The app's body codec (as the runtime was constructed with it). */
  codec: BodyCodec
  worker: WorkerContext
  sink: EgressSink
  /** The runtime's logger (debug lines). */
  logger: RuntimeLogger
  /** The runtime's logger with its warn and error limited. */
  log: RuntimeLogger
  /** The runtime's workTimeoutMs (a route's own overrides it). */
  timeoutMs: number
  sessions: SessionManager
  lanes: Lanes
  settlement: Settlement
  pipeline: RequestPipeline
  reporter: ErrorReporter
}

/** Turns the lanes' tasks into requests and runs them. */
export class TaskRouter implements TaskRunner {
  readonly #c: CompiledApp
  readonly #codec: BodyCodec
  readonly #worker: WorkerContext
  readonly #sink: EgressSink
  readonly #logger: RuntimeLogger
  readonly #log: RuntimeLogger
  readonly #timeoutMs: number
  readonly #sessions: SessionManager
  readonly #lanes: Lanes
  readonly #settlement: Settlement
  readonly #pipeline: RequestPipeline
  readonly #reporter: ErrorReporter
  /** Ids of queued tasks whose session load failed while they waited (answered -10005 when their turn comes). */
  readonly #loadFailed = new Set<number>()

  constructor(deps: TaskRouterDeps) {
    this.#c = deps.compiled
    this.#codec = deps.codec
    this.#worker = deps.worker
    this.#sink = deps.sink
    this.#logger = deps.logger
    this.#log = deps.log
    this.#timeoutMs = deps.timeoutMs
    this.#sessions = deps.sessions
    this.#lanes = deps.lanes
    this.#settlement = deps.settlement
    this.#pipeline = deps.pipeline
    this.#reporter = deps.reporter
  }

  settleFailed(id: number): void {
    this.#settlement.done(id, 'failed')
  }

  runTask(id: number, task: Task): void | Promise<void> {
    const c = this.#c
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
        this.#settlement.done(id, 'no-handler')
        return
      }
      const req = new PeonyRequest(id, task, this.#worker, route.info, body)
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
          this.#settlement.attach(req, s)
        } else {
          this.#settlement.attach(req, this.#sessions.touch(lane))
        }
      }
      return this.#pipeline.run(req, route.pre, route.end, route.info.handler, undefined, undefined, timeoutMs)
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
        this.#settlement.done(id, 'no-handler')
        return
      }
    }
    const req = new PeonyRequest(id, task, this.#worker, undefined, undefined)
    if (this.#sessions.enabled && hasUid(task)) {
      // Client created/closed and generic tasks see a resident session but never load one.
      const lane = routingKey(task)
      if (tc === 20) {
        this.#settlement.attach(req, this.#sessions.residentAt(lane))
        this.#sessions.clientClosed(lane)
      } else {
        this.#settlement.attach(req, this.#sessions.touch(lane))
      }
    }
    return this.#pipeline.run(req, c.hooks.preRequest, c.hooks.onRequestEnd, undefined, on, onName, this.#timeoutMs)
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
      void this.#reporter.report(err as PeonyError, req)
      this.#lanes.addQueuedIds(lane, this.#loadFailed)
      this.#answerLoadFailed(req.id, req.task, req.body as RequestBody)
      return
    }
    const r = this.#sessions.fireDue(s)
    if (r !== undefined) await r
    this.#settlement.attach(req, s)
    const rr = this.#pipeline.run(req, pre, end, req.route!.handler, undefined, undefined, timeoutMs)
    if (rr !== undefined) await rr
  }

  /** -10005 for a request whose session could not be loaded. */
  #answerLoadFailed(id: number, task: Task, body: RequestBody): void {
    if (hasConnection(task)) this.#autoReply(id, task, body.cmd, body.sn, ReplyCode.STATE_LOAD_FAILED)
    this.#settlement.done(id, 'load-failed')
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
    this.#settlement.done(id, 'bad-body')
  }

  #autoReply(id: number, task: Task, cmd: number | string | undefined, sn: Int64 | undefined, ret: number): void {
    autoReply(this.#codec, this.#sink, this.#log, id, task, cmd, sn, ret)
  }
}
