/**
 * The master: reads intake, routes every task by its routing key to one worker slot, keeps the
 * per-uid lanes, dispatches to worker threads in batches, refuses what it cannot take, supervises
 * and respawns workers, and runs the graceful stop.
 *
 *   routing key ──hash──▶ shard (fixed count) ──group's map──▶ slot (worker thread)
 *
 * This file is the `Master` class: its public API, how the parts are put together, and the start
 * and stop orchestration. The parts: dispatch.ts (intake → lanes → a worker, refusals),
 * supervision.ts (worker threads, deaths, respawn, watchdog), io-threads.ts (the egress and
 * storage threads), stats.ts, slot.ts, options.ts.
 */
import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import type { Worker } from 'node:worker_threads'
import pino, { type Logger } from 'pino'
import { createEgressSender, createIntakeServer, type IntakeServer } from '@peony/broker-client'
import { LogLimiter } from '@peony/log-limiter'
import { PeonyError, ReplyCode, type Task } from '@peony/protocol'
import { DiscardReason, Dispatcher } from './dispatch.ts'
import { MasterErrorCode } from './errors.ts'
import { IoThreads } from './io-threads.ts'
import { resolveMasterOptions, type MasterInput, type MasterOptions } from './options.ts'
import { createSlot, markMaskFor, type Group, type Slot } from './slot.ts'
import { collectStats, type MasterStats, type MasterStatus } from './stats.ts'
import { Supervisor, type RunState } from './supervision.ts'

export { MasterErrorCode } from './errors.ts'
export { DiscardReason } from './dispatch.ts'
export type { HandlerCounts, MasterStats, MasterStatus, SessionCounts, SplitCount } from './stats.ts'

/** Creates a master. Nothing is bound or spawned until `start()`. */
export function createMaster(input: MasterInput): Master {
  return new Master(input)
}

export class Master extends EventEmitter {
  readonly options: MasterOptions
  /** The status, and whether a stop is still draining (shared with supervision). */
  private readonly run: RunState = { status: 'closed', draining: false }
  private started = false
  private readonly log: Logger
  private readonly rlog: LogLimiter
  private readonly slots: Slot[] = []
  private intake: IntakeServer | undefined
  private readonly dispatch: Dispatcher
  private readonly io: IoThreads
  private readonly supervisor: Supervisor
  private stopPromise: Promise<void> | undefined

  constructor(input: MasterInput) {
    super()
    const o = resolveMasterOptions(input)
    this.options = o
    this.log = o.logger ?? pino({ level: process.env.PEONY_LOG_LEVEL ?? 'info' })
    this.rlog = new LogLimiter(this.log)
    const markMask = markMaskFor(o.claimedMaxSize)
    const groups: Group[] = o.groups.map((g) => ({ id: g.id, key: String(g.id), slots: [] }))
    const groupByKey = new Map<string, Group>()
    for (let gi = 0; gi < groups.length; gi++) {
      const group = groups[gi]!
      groupByKey.set(group.key, group)
      for (let i = 0; i < o.groups[gi]!.count; i++) {
        const slot = createSlot(this.slots.length, group, i, o.laneMaxInFlight, o.laneKeepIdle, markMask)
        group.slots.push(slot)
        this.slots.push(slot)
      }
    }
    this.dispatch = new Dispatcher(o, this.rlog, groups, groupByKey, this.slots)
    this.io = new IoThreads(o, this.log, this.slots)
    this.supervisor = new Supervisor(o, this.log, this.rlog, this.slots, markMask, this.run, this.dispatch, this.io)
  }

  get status(): MasterStatus {
    return this.run.status
  }

  /** The worker slot (global index) that owns a task's routing key, or undefined when no group takes it. */
  slotOf(task: Task): number | undefined {
    return this.dispatch.slotOf(task)
  }

  /** Binds intake, connects egress, spawns every worker and waits until each is ready. */
  async start(): Promise<{ intakeEndpoints: string[]; workers: number }> {
    if (this.started) throw new PeonyError(MasterErrorCode.ALREADY_STARTED, 'master already started')
    this.started = true
    this.run.status = 'opening'
    const o = this.options
    const dispatch = this.dispatch
    // Errors of the master's own sockets (intake, its egress sender) repeat while their cause lasts.
    const logIoError = (err: PeonyError): void => this.rlog.error(err.code, { err, code: err.code }, err.message)
    dispatch.egress = createEgressSender({
      endpoint: o.forwarderEndpoint,
      sender: `${o.serverId}/master.${randomBytes(4).toString('hex')}`,
      ack: o.egressAck,
      bufferMax: o.egressBufferMax,
      maxFrameBytes: o.maxFrameBytes,
      onError: logIoError,
    })
    // The worker threads start at once, and intake binds meanwhile: tasks that arrive before the
    // workers are ready wait in their lanes (each worker's port buffers what is posted to it).
    // The egress and storage threads start once every worker has loaded the app: on 2 cores,
    // five threads booting together delayed the workers' first tasks (docs/benchmarks.md, 4a).
    // Until then what a worker sends them waits in its channel; start() still waits for both.
    const ioGate = this.supervisor.ioGate()
    const workersReady = this.slots.map((s) => this.supervisor.spawn(s, true))
    const egressReady = ioGate.then(() => this.io.spawnEgressThread())
    const storageReady = ioGate.then(() => this.io.spawnStorageThread())
    this.supervisor.checkIoGate()
    this.intake = createIntakeServer({
      endpoints: o.intakeEndpoints,
      maxFrameBytes: o.maxFrameBytes,
      onTasks: (tasks, _broker, frame, ranges) => dispatch.onTasks(tasks, frame, ranges!),
      ranges: true,
      onReject: (rej) => dispatch.onReject(rej),
      onError: logIoError,
    })
    const results = await Promise.allSettled([storageReady, egressReady, ...workersReady, this.intake.open()])
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) {
      await this.abortStart()
      throw failed.reason
    }
    this.supervisor.startMonitor()
    this.run.status = 'open'
    this.supervisor.ensureSpare()
    const intakeEndpoints = [...this.intake.endpoints]
    this.log.info({ serverId: o.serverId, intake: intakeEndpoints, forwarder: o.forwarderEndpoint, workers: this.slots.length }, 'master open')
    return { intakeEndpoints, workers: this.slots.length }
  }

  private async abortStart(): Promise<void> {
    await this.destroy()
  }

  /**
   * Immediate teardown, for a failed start or a forced exit: workers are terminated (their
   * in-flight tasks are lost), queued tasks are dropped, sockets close with no linger. The egress
   * thread is asked to close its sockets first and only terminated if it does not within 1 s,
   * because zeromq.js aborts the process when a thread holding sockets is torn down. Call it
   * before `process.exit()` whenever `stop()` cannot be awaited.
   */
  async destroy(): Promise<void> {
    if (
      this.run.status === 'closed' &&
      this.io.egressThread === undefined &&
      this.supervisor.spare === undefined &&
      this.slots.every((s) => s.worker === undefined)
    )
      return
    this.run.status = 'closing'
    this.supervisor.stopMonitor()
    await this.supervisor.dropSpare()
    await this.supervisor.terminateWorkers()
    await this.intake?.close().catch(() => {})
    await this.io.closeStorageThread(1_000)
    await this.io.closeEgressThread(0, 1_000)
    await this.dispatch.egress?.close({ lingerMs: 0 })
    this.io.closePendingPorts()
    this.run.status = 'closed'
  }

  /**
   * Graceful stop, in phases: (1) refuse new client requests with -10003 while still reading
   * intake; (2) finish queued and in-flight tasks; (3) close intake, stop the workers' timers
   * and run their stop hooks; (4) let workers flush and close (own timeout); (5) drain egress
   * with what is left of the stop budget as linger. Idempotent.
   */
  stop(reason = 'stop'): Promise<void> {
    this.stopPromise ??= this.doStop(reason)
    return this.stopPromise
  }

  private async doStop(reason: string): Promise<void> {
    if (this.run.status === 'closed' && !this.started) return
    const o = this.options
    const dispatch = this.dispatch
    const t0 = Date.now()
    const deadline = t0 + o.stopTimeoutMs
    const closeBudget = Math.min(o.workerCloseTimeoutMs, Math.floor(o.stopTimeoutMs / 2))
    this.log.info({ reason }, 'stopping: refusing new client requests')
    this.run.status = 'closing'
    // (1) + (2): refusing from here to the end (intake is closed in phase 3, and nothing read
    // before that may be accepted after an earlier refusal on its connection).
    dispatch.refusing = true
    this.run.draining = true
    dispatch.schedulePump()
    const drained = await dispatch.waitDrained(deadline - closeBudget)
    if (!drained) {
      for (const slot of this.slots) {
        for (const e of slot.sched.drainQueued()) dispatch.discard(slot, e.task, DiscardReason.STOP_DEADLINE, ReplyCode.SHUTTING_DOWN)
      }
      this.log.warn({ inFlight: this.slots.reduce((n, s) => n + s.inFlight.size, 0) }, 'stop: drain deadline passed')
    }
    // (3) intake closes; no more respawns; the spare goes.
    this.run.draining = false
    this.supervisor.stopMonitor()
    await this.supervisor.dropSpare()
    await this.intake?.close().catch((err: unknown) => this.log.error({ err }, 'intake close failed'))
    // (3) + (4): workers run their stop hooks, flush, drain their egress, exit.
    await this.supervisor.stopWorkers(Math.min(deadline, Date.now() + closeBudget))
    // (4b) every worker has written its sessions: close the storage.
    await this.io.closeStorageThread(Math.max(1_000, deadline - Date.now()))
    // (5) the workers' egress (egress thread) and the master's own, with what is left as linger.
    const linger = Math.max(0, deadline - Date.now())
    // At least 1 s before terminating, as destroy() gives it: terminating a thread that holds
    // ZeroMQ sockets makes zeromq.js abort the whole process (seen as SIGABRT at stop when a slow
    // drain had used the budget, on a loaded 2-core machine). A stop that overruns by < 1 s is
    // the lesser harm.
    await this.io.closeEgressThread(Math.max(0, linger - 50), Math.max(linger + 100, 1_000))
    await dispatch.egress?.close({ lingerMs: Math.max(0, deadline - Date.now()) })
    this.run.status = 'closed'
    this.rlog.flush()
    this.log.info({ ms: Date.now() - t0, stats: this.stats() }, 'stopped')
    this.emit('stopped')
  }

  /** A snapshot of every counter (see MasterStats). */
  stats(): MasterStats {
    return collectStats({
      status: this.run.status,
      options: this.options,
      slots: this.slots,
      intake: this.intake,
      dispatch: this.dispatch,
      supervisor: this.supervisor,
      io: this.io,
    })
  }

  /** The live worker thread of a slot (for tests and tooling). */
  workerThread(slot: number): Worker | undefined {
    return this.slots[slot]?.worker
  }
}
