/**
 * The request a handler receives: the task (every header field, with getters), the decoded body
 * (`cmd`, `sn`, `data`; never throws, even for a task without a body: fixes the original's B1),
 * the worker, `interrupt()`, and the reply path.
 *
 * Replies: `req.reply(data, ret)` answers the client once (maple's rsp_once). A second reply,
 * including a late one from a handler that already got a -10001 for a timeout, is ignored with
 * a warning and returns false. Helpers that need the client's connection (`reply`,
 * `closeClient`, `loginClient`, …) return false and do nothing for a task without
 * `nodeId` + `connId` (a 100 sent to a uid, for example).
 */
import { type EgressMessage, hasUid, type Int64, type RequestBody, type Task, type Uid, type UsersRow } from '@peony/protocol'
import { EMIT, buildWriteToWorker, usersRow, type UsersFilter, type WorkerTarget } from './egress.ts'
import type { BodyCmd, RouteInfo } from './routes.ts'
import type { WorkerContext } from './worker-context.ts'
import type { Session } from './session/session.ts'
import type { Barrier } from './session/output-gate.ts'

const NOT_READ = 0
const READ = 1

/** A bigint-safe view of a 64-bit value for logs. */
function logInt(v: Int64 | string | undefined): number | string | undefined {
  return typeof v === 'bigint' ? v.toString() : v
}

/** One task as user code sees it. Created by the runtime; user code does not construct it. */
export class PeonyRequest {
  /** The host's id of this task. */
  readonly id: number
  /** The task as it came from the broker. */
  readonly task: Task
  /** The worker running it. */
  readonly worker: WorkerContext
  /** The route it was dispatched to (undefined for task cmds 15, 20 and generic tasks). */
  readonly route: RouteInfo | undefined
  #body: RequestBody | undefined
  #bodyState: number
  #replied = false
  #interrupted = false
  #locals: Record<string | symbol, unknown> | undefined = undefined
  /** @internal Set by the runtime. */
  _session: Session | undefined = undefined
  /** @internal The session whose output gate holds this request's outputs (output-gate.ts). */
  _hold: Session | undefined = undefined
  /** @internal This request's barrier when its route is gated. */
  _barrier: Barrier | undefined = undefined

  /** @internal `body` is the decoded body of a 10/100 task; for other tasks it is decoded on first use. */
  constructor(id: number, task: Task, worker: WorkerContext, route: RouteInfo | undefined, body: RequestBody | undefined) {
    this.id = id
    this.task = task
    this.worker = worker
    this.route = route
    this.#body = body
    this.#bodyState = body === undefined ? NOT_READ : READ
  }

  // ─────────────────────────── task fields ───────────────────────────

  /**
   * The player's session (when the app defines sessions): loaded before a route handler runs;
   * for client-created/closed and generic tasks, the resident one if any. Undefined without a
   * uid or for a route with `session: false` whose player is not resident. Typed access:
   * `def.of(req)` with the definition `app.session()` returned.
   */
  get session(): Session | undefined {
    return this._session
  }

  /** The task cmd: 10 client request, 15 client created, 20 client closed, 100 write to worker, or another value. */
  get taskCmd(): number {
    return this.task.cmd
  }
  /** The player id; undefined when the connection is not logged in (absent, 0 and "" all read as undefined). */
  get uid(): Uid | undefined {
    return hasUid(this.task) ? this.task.uid : undefined
  }
  /** The gateway node holding the client's connection. */
  get nodeId(): number | undefined {
    return this.task.nodeId
  }
  /** The connection's id on its gateway. */
  get connId(): Int64 | undefined {
    return this.task.connId
  }
  /** Opaque tag, copied into every reply. */
  get tag(): number | undefined {
    return this.task.tag
  }
  /** The connection's userdata bitmask (set at login). */
  get userdata(): Int64 | undefined {
    return this.task.userdata
  }
  /** Free field. */
  get custom(): Int64 | undefined {
    return this.task.custom
  }
  /** bit 0 inner, bit 1 IPv6. */
  get flags(): number | undefined {
    return this.task.flags
  }
  /** The client's address as text. */
  get clientIp(): string | undefined {
    return this.task.clientIp
  }
  /** Send time in ms since the epoch, when the broker set it. */
  get ts(): Int64 | undefined {
    return this.task.ts
  }
  /** True when the task names a client connection (`nodeId` and `connId`), so it can be answered. */
  get hasConnection(): boolean {
    return this.task.nodeId !== undefined && this.task.connId !== undefined
  }

  // ─────────────────────────── body ───────────────────────────

  /** The decoded body, or undefined when the task has none (15/20) or it cannot be decoded. Never throws. */
  get body(): RequestBody | undefined {
    if (this.#bodyState === NOT_READ) {
      this.#bodyState = READ
      const b = this.task.body
      if (b !== undefined && b.length > 0) {
        try {
          this.#body = this.worker.app.bodyCodec.decodeRequest(b)
        } catch {
          this.#body = undefined
        }
      }
    }
    return this.#body
  }
  /** The body cmd the request was routed on; undefined without a readable body. */
  get cmd(): BodyCmd | undefined {
    return this.body?.cmd
  }
  /** The request's serial number, echoed in the reply. */
  get sn(): Int64 | undefined {
    return this.body?.sn
  }
  /** The request's data. */
  get data(): unknown {
    return this.body?.data
  }

  // ─────────────────────────── flow ───────────────────────────

  /**
   * From a pre-hook: skip the rest of the pre-hooks and the handler (onRequestEnd still runs;
   * the outcome is 'interrupted'). Reply first if the client should hear something. Called from
   * the handler itself it changes nothing.
   */
  interrupt(): void {
    this.#interrupted = true
  }
  /** True once `interrupt()` was called. */
  get interrupted(): boolean {
    return this.#interrupted
  }
  /** True once a reply was sent (by the app, or by the runtime's -10001 on failure/timeout). */
  get replied(): boolean {
    return this.#replied
  }
  /** Free per-request state, e.g. for a preRequest hook to hand a resource to onRequestEnd. */
  get locals(): Record<string | symbol, unknown> {
    return (this.#locals ??= {})
  }

  // ─────────────────────────── replies and pushes ───────────────────────────

  /**
   * Answers the client: egress 220 with the reply body `{cmd, sn, ret, data}` (cmd and sn
   * echoed), the task's `tag` and `ret`. Returns false, sending nothing, for a second reply or a
   * task without a connection. Throws `PEONY_BROKER_ENCODE_FAILED` when `data` cannot be encoded
   * (nothing is sent and the request counts as not replied).
   */
  reply(data?: unknown, ret = 0): boolean {
    if (this.#replied) {
      this.worker.logger.warn(this.#logCtx(), 'second reply ignored (a request is answered once)')
      return false
    }
    if (!this.hasConnection) {
      this.worker.logger.debug(this.#logCtx(), 'reply ignored: the task has no client connection')
      return false
    }
    const body = this.worker.app.bodyCodec.encodeReply({ cmd: this.cmd, sn: this.sn, ret, data })
    this.#replied = true
    this.#send({ cmd: 220, nodeId: this.task.nodeId as number, connId: this.task.connId as Int64, tag: this.task.tag, ret, body }, true)
    return true
  }

  /**
   * Pushes `{cmd, data}` to this player: egress 230 to the uid when the task has an int uid,
   * otherwise 220 to this connection. Returns false when there is neither.
   */
  push(cmd: BodyCmd, data?: unknown): boolean {
    const uid = this.uid
    if (uid !== undefined && typeof uid !== 'string') {
      this.#emit({ cmd: 230, rows: [{ uids: [uid], body: this.worker.app.bodyCodec.encodePush({ cmd, data }) }] })
      return true
    }
    if (this.hasConnection) {
      const body = this.worker.app.bodyCodec.encodePush({ cmd, data })
      this.#emit({ cmd: 220, nodeId: this.task.nodeId as number, connId: this.task.connId as Int64, tag: this.task.tag, body })
      return true
    }
    this.worker.logger.debug(this.#logCtx(), 'push ignored: the task has neither an int uid nor a connection')
    return false
  }

  /** 230: raw rows to users (see `worker.egress.writeToUsers`). */
  writeToUsers(rows: UsersRow[]): void {
    if (!Array.isArray(rows)) throw new TypeError('writeToUsers(rows) needs an array of rows')
    this.#emit({ cmd: 230, rows })
  }

  /** 230 with one row: the push `{cmd, data}` to `uids` (special uids -1, -2, -3 allowed). */
  pushToUsers(uids: Int64[], cmd: BodyCmd, data?: unknown, filter?: UsersFilter): void {
    this.#emit({ cmd: 230, rows: [usersRow(uids, this.worker.app.bodyCodec.encodePush({ cmd, data }), filter)] })
  }

  /** 250: closes every matching connection. */
  closeUsers(uids: Int64[], filter?: UsersFilter): void {
    if (!Array.isArray(uids)) throw new TypeError('closeUsers(uids) needs an array of uids')
    this.#emit({ cmd: 250, uids, userdata: filter?.userdata, exclude: filter?.exclude })
  }

  /** 240: closes this connection. False without a connection. */
  closeClient(): boolean {
    return this.#connCmd(240)
  }

  /** 260: logs this connection in as `uid`. False without a connection. */
  loginClient(uid: Uid, userdata?: Int64): boolean {
    if (!this.hasConnection) return this.#noConn('loginClient')
    this.#emit({ cmd: 260, nodeId: this.task.nodeId as number, connId: this.task.connId as Int64, uid, userdata })
    return true
  }

  /** 270: logs this connection out. False without a connection. */
  logoutClient(): boolean {
    return this.#connCmd(270)
  }

  /** 280: drops the tasks the gateway still holds for this connection. False without a connection. */
  clearClientTasks(): boolean {
    return this.#connCmd(280)
  }

  /** 100: sends a task into intake for a uid and/or a connection (the body: bytes, or `{cmd, sn?, data?}` encoded by the codec). */
  writeToWorker(target: WorkerTarget, body: Uint8Array | RequestBody): void {
    this.#emit(buildWriteToWorker(this.worker.app.bodyCodec, target, body))
  }

  // ─────────────────────────── logging ───────────────────────────

  /** A JSON-safe summary (bigints as strings); safe to log for any task, with or without a body. */
  toJSON(): Record<string, unknown> {
    return {
      id: this.id,
      taskCmd: this.task.cmd,
      cmd: this.cmd,
      sn: logInt(this.sn),
      uid: logInt(this.uid),
      nodeId: this.task.nodeId,
      connId: logInt(this.task.connId),
      route: this.route?.name,
    }
  }

  /** `PeonyRequest(taskCmd=10 cmd=… uid=…)`; never throws. */
  toString(): string {
    return `PeonyRequest(taskCmd=${this.task.cmd} cmd=${String(this.cmd)} sn=${String(this.sn)} uid=${String(this.uid)} conn=${String(this.task.nodeId)}:${String(this.task.connId)})`
  }

  #logCtx(): Record<string, unknown> {
    return { req: this.toJSON() }
  }

  #emit(msg: EgressMessage): void {
    this.#send(msg, false)
  }

  #send(msg: EgressMessage, reply: boolean): void {
    const h = this._hold
    if (h !== undefined) this.worker.sessions.gateOut(h, msg, this.id, reply, this)
    else this.worker.egress[EMIT](msg, this.id, reply)
  }

  #noConn(what: string): false {
    this.worker.logger.debug(this.#logCtx(), `${what} ignored: the task has no client connection`)
    return false
  }

  #connCmd(cmd: 240 | 270 | 280): boolean {
    if (!this.hasConnection) return this.#noConn(cmd === 240 ? 'closeClient' : cmd === 270 ? 'logoutClient' : 'clearClientTasks')
    this.#emit({ cmd, nodeId: this.task.nodeId as number, connId: this.task.connId as Int64 })
    return true
  }
}
