/**
 * Dispatch: intake → routing → per-uid lanes → one batched message to a worker slot, the
 * in-flight table, and the answers and refusals the master sends itself (egress 220).
 *
 * The master always knows what each worker holds: every dispatched task has an id and stays in
 * `slot.inFlight` until the worker reports it settled (`onDone`).
 */
import type { EgressSender } from '@peony/broker-client'
import type { LogLimiter } from '@peony/log-limiter'
import { msgpackBodyCodec, packValue, ReplyCode, routingHash, routingKey, TaskCmd, type Rejection, type Task } from '@peony/protocol'
import type { Entry } from './lanes/lane-scheduler.ts'
import { MasterErrorCode } from './errors.ts'
import type { MasterOptions } from './options.ts'
import type { Group, Slot } from './slot.ts'
import type { ToWorker } from './thread/messages.ts'

/** Why a task was discarded (not handled). */
export const DiscardReason = {
  QUEUE_FULL: 'queue_full',
  SHUTTING_DOWN: 'shutting_down',
  NO_ROUTE: 'no_route',
  STOP_DEADLINE: 'stop_deadline',
  /** A client request waited in the master longer than maxQueueWaitMs: answered -10002, not started late. */
  QUEUE_WAIT: 'queue_wait',
} as const
export type DiscardReason = (typeof DiscardReason)[keyof typeof DiscardReason]

/**
 * Tasks that make a dispatch message worth sending before the end of the turn. Each message
 * wakes a worker thread, which costs far more than its size on this VM kind (a postMessage from
 * the intake loop measured ~90 µs of the master's time); 256 over 64 took the 1-task-per-message
 * benchmark from ~0.65 to 0.85 × the bare loop (docs/benchmarks.md). A partial batch still
 * leaves at the end of the turn.
 */
const DISPATCH_BATCH = 256

export class Dispatcher {
  /** The master's own egress sender (refusals and answers), from start() on. */
  egress: EgressSender | undefined
  /** From the start of a graceful stop on: client requests are refused (-10003) until intake is closed, and after. */
  refusing = false
  private readonly picked: Entry[] = []
  private readonly dirty = new Set<Slot>()
  private pumpScheduled = false
  private readonly drainWaiters = new Set<() => void>()
  // counters (read by stats.ts)
  clientReq = 0
  readonly reasons: Record<DiscardReason, number> = { queue_full: 0, shutting_down: 0, no_route: 0, stop_deadline: 0, queue_wait: 0 }
  readonly refused: Record<string, number> = {}
  readonly rejects: Record<string, number> = {}
  noRouteDiscards = 0
  dispatchMessages = 0
  dispatchTasks = 0

  private readonly options: MasterOptions
  private readonly rlog: LogLimiter
  private readonly groups: Group[]
  private readonly groupByKey: Map<string, Group>
  private readonly slots: Slot[]

  constructor(options: MasterOptions, rlog: LogLimiter, groups: Group[], groupByKey: Map<string, Group>, slots: Slot[]) {
    this.options = options
    this.rlog = rlog
    this.groups = groups
    this.groupByKey = groupByKey
    this.slots = slots
  }

  // ───────────────────────────── routing ─────────────────────────────

  /** The worker slot (global index) that owns a task's routing key, or undefined when no group takes it. */
  slotOf(task: Task): number | undefined {
    const group = this.groupOf(task)
    if (group === undefined) return undefined
    return this.slotIn(group, task).index
  }

  private groupOf(task: Task): Group | undefined {
    const router = this.options.router
    if (router === undefined) return this.groups[0]
    return this.groupByKey.get(String(router(task)))
  }

  private slotIn(group: Group, task: Task): Slot {
    // routing key → shard (fixed count) → slot: a shard's slot depends only on the group's size.
    const shard = routingHash(task) % this.options.shards
    return group.slots[shard % group.slots.length]!
  }

  // ───────────────────────────── intake ─────────────────────────────

  onReject(rej: Rejection): void {
    this.rejects[rej.code] = (this.rejects[rej.code] ?? 0) + 1
    this.rlog.warn('reject:' + rej.code, { code: rej.code, index: rej.index, key: rej.key, reason: rej.message }, 'intake rejected a task')
  }

  onTasks(tasks: Task[], frame: Uint8Array, ranges: number[]): void {
    const qmax = this.options.queueMaxSize
    const now = performance.now()
    for (let i = 0; i < tasks.length; i++) {
      const task = tasks[i]!
      this.clientReq++
      let group: Group | undefined
      try {
        group = this.groupOf(task)
      } catch (err) {
        this.rlog.warn('router-throw', { err, code: MasterErrorCode.ROUTER_FAILED }, 'group router threw; task has no route')
      }
      if (group === undefined) {
        this.noRouteDiscards++
        this.discard(undefined, task, DiscardReason.NO_ROUTE, ReplyCode.NO_ROUTE)
        continue
      }
      const slot = this.slotIn(group, task)
      slot.workerReq++
      const cmd = task.cmd
      if (this.refusing && cmd === TaskCmd.CLIENT_REQ) {
        this.discard(slot, task, DiscardReason.SHUTTING_DOWN, ReplyCode.SHUTTING_DOWN)
        continue
      }
      // 15 and 20 are accepted beyond the bound so no connection's session leaks (protocol §1.4).
      if (slot.sched.queued >= qmax && cmd !== TaskCmd.CLIENT_CREATED && cmd !== TaskCmd.CLIENT_CLOSED) {
        this.discard(slot, task, DiscardReason.QUEUE_FULL, ReplyCode.QUEUE_FULL)
        continue
      }
      const r0 = ranges[2 * i]!
      const r1 = ranges[2 * i + 1]!
      slot.sched.push(routingKey(task), task, r0 === 0 && r1 === frame.length ? frame : frame.subarray(r0, r1), now)
      // A batch's worth goes out at once: when intake has a backlog to drain, waiting for the
      // end of the turn would hold every task until the whole backlog was read.
      if (++slot.sincePump >= DISPATCH_BATCH) this.pump(slot)
      else this.dirty.add(slot)
    }
    this.schedulePump()
  }

  discard(slot: Slot | undefined, task: Task, reason: DiscardReason, code: number): void {
    this.reasons[reason]++
    if (slot) slot.discards++
    if (task.cmd === TaskCmd.CLIENT_REQ) this.answer(task, code)
    this.rlog.warn('discard:' + reason, { reason, code, slot: slot?.index, cmd: task.cmd }, 'task not handled')
  }

  /** Answers a client request with one of Peony's codes through egress 220 (protocol §4). */
  answer(task: Task, code: number): void {
    if (task.nodeId === undefined || task.connId === undefined || this.egress === undefined) return
    this.refused[code] = (this.refused[code] ?? 0) + 1
    let body: Uint8Array
    try {
      const peek = task.body !== undefined && task.body.length > 0 ? msgpackBodyCodec.peekRequest(task.body) : {}
      body = peek.cmd !== undefined ? msgpackBodyCodec.encodeReply({ cmd: peek.cmd, sn: peek.sn, ret: code }) : packValue({ ret: code })
    } catch {
      // An sn no reply can carry (a uint64 above 2^63-1) or an unreadable body: the code alone,
      // rather than an exception that would leave the rest of the frame unqueued and unanswered.
      body = packValue({ ret: code })
    }
    this.egress.send({ cmd: 220, nodeId: task.nodeId, connId: task.connId, tag: task.tag, ret: code, body })
  }

  // ───────────────────────────── dispatch ─────────────────────────────

  schedulePump(): void {
    if (this.pumpScheduled || this.dirty.size === 0) return
    this.pumpScheduled = true
    setImmediate(() => {
      this.pumpScheduled = false
      for (const slot of this.dirty) this.pump(slot)
      this.dirty.clear()
    })
  }

  /**
   * Moves ready tasks of a slot into its worker, up to the claimed window, as one message: the
   * tasks' original msgpack maps concatenated into one msgpack array (a memcpy, no re-encoding),
   * and their dispatch ids; both buffers are transferred.
   */
  pump(slot: Slot): void {
    // Nothing goes to a worker once it has been told to stop (it would refuse it).
    if ((!slot.live && slot.worker === undefined) || slot.stopping) return
    const window = this.options.claimedMaxSize
    const sched = slot.sched
    if (!sched.hasReady() || slot.inFlight.size >= window) {
      slot.sincePump = 0
      return
    }
    const picked = this.picked
    picked.length = 0
    let bytes = 5
    const maxWait = this.options.maxQueueWaitMs
    const shedBefore = maxWait > 0 ? performance.now() - maxWait : -Infinity
    while (slot.inFlight.size < window) {
      const e = sched.next()
      if (e === undefined) break
      // Shed late work instead of running it late: the client has likely given up by now, and
      // running it would only make every request behind it later still.
      if (e.at < shedBefore && e.task.cmd === TaskCmd.CLIENT_REQ) {
        sched.settle(e)
        this.discard(slot, e.task, DiscardReason.QUEUE_WAIT, ReplyCode.QUEUE_FULL)
        continue
      }
      slot.inFlight.add(e)
      picked.push(e)
      bytes += e.raw.length
    }
    const n = picked.length
    slot.sincePump = 0
    if (n === 0) return
    const buf = new ArrayBuffer(bytes)
    const out = new Uint8Array(buf)
    out[0] = 0xdd
    out[1] = n >>> 24
    out[2] = (n >>> 16) & 0xff
    out[3] = (n >>> 8) & 0xff
    out[4] = n & 0xff
    const ids = new Int32Array(n)
    let p = 5
    for (let i = 0; i < n; i++) {
      const e = picked[i]!
      out.set(e.raw, p)
      p += e.raw.length
      ids[i] = e.id
    }
    picked.length = 0
    this.dispatchMessages++
    this.dispatchTasks += n
    const msg: ToWorker = { t: 'tasks', buf, ids }
    slot.worker!.postMessage(msg, [buf, ids.buffer])
  }

  /** A worker reported tasks settled (`{t:'done', ids}`). */
  onDone(slot: Slot, ids: Int32Array): void {
    for (let i = 0; i < ids.length; i++) {
      const e = slot.inFlight.take(ids[i]!)
      if (e === undefined) continue
      slot.sched.settle(e)
    }
    // Coalesce: several done messages in one turn lead to one dispatch message.
    this.dirty.add(slot)
    this.schedulePump()
    if (this.drainWaiters.size > 0 && this.isDrained()) for (const w of this.drainWaiters) w()
  }

  // ───────────────────────────── drained ─────────────────────────────

  /** Wakes whoever waits for the lanes to drain (a worker's death may have settled their last tasks). */
  checkDrained(): void {
    if (this.drainWaiters.size > 0 && this.isDrained()) for (const w of this.drainWaiters) w()
  }

  private isDrained(): boolean {
    for (const s of this.slots) if (s.sched.queued > 0 || s.inFlight.size > 0) return false
    return true
  }

  /** Resolves true once no slot holds a queued or in-flight task, false if `until` (epoch ms) comes first. */
  waitDrained(until: number): Promise<boolean> {
    if (this.isDrained()) return Promise.resolve(true)
    return new Promise((resolve) => {
      const finish = (ok: boolean): void => {
        clearTimeout(timer)
        this.drainWaiters.delete(check)
        resolve(ok)
      }
      const check = (): void => {
        if (this.isDrained()) finish(true)
      }
      const timer = setTimeout(() => finish(this.isDrained()), Math.max(0, until - Date.now()))
      this.drainWaiters.add(check)
    })
  }
}
