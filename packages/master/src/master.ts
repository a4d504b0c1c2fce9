/**
 * The master: reads intake, routes every task by its routing key to one worker slot, keeps the
 * per-uid lanes, dispatches to worker threads in batches, refuses what it cannot take, supervises
 * and respawns workers, and runs the graceful stop.
 *
 *   routing key ──hash──▶ shard (fixed count) ──group's map──▶ slot (worker thread)
 *
 * The master always knows what each worker holds: every dispatched task has an id and stays in
 * `slot.inFlight` until the worker reports it settled. When a worker dies, the shared marks tell
 * which of those had started (lost: answered -10001) and which had not (re-queued at the head
 * of their lanes, in order).
 */
import { EventEmitter } from 'node:events'
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads'
import { randomBytes } from 'node:crypto'
import pino, { type Logger } from 'pino'
import type { SessionStats } from '@peony/worker/host'
import { createEgressSender, createIntakeServer, type EgressSender, type IntakeServer } from '@peony/broker-client'
import { LogLimiter } from '@peony/log-limiter'
import {
  msgpackBodyCodec,
  packValue,
  PeonyError,
  ReplyCode,
  routingHash,
  routingKey,
  TaskCmd,
  type Rejection,
  type Task,
} from '@peony/protocol'
import { LaneScheduler, type Entry } from './lanes/lane-scheduler.ts'
import { InFlight } from './lanes/in-flight.ts'
import { masterDefaults, masterDefaultsFresh, masterOptionSchema, type MasterInput, type MasterOptions } from './options.ts'
import { createJournal } from './thread/egress-journal.ts'
import {
  HEARTBEAT_MS,
  type Assignment,
  type EgressBoot,
  type FromEgress,
  type FromStorage,
  type FromWorker,
  type StorageBoot,
  type ThreadBoot,
  type ToEgress,
  type ToStorage,
  type ToWorker,
} from './thread/messages.ts'

/** Codes of errors the master raises. */
export const MasterErrorCode = {
  /** A worker failed to start: the application module did not load, or the thread died before it was ready. */
  APP_LOAD_FAILED: 'PEONY_WORKER_APP_LOAD_FAILED',
  /** The storage thread could not open the configured storage (the cause's code, e.g. PEONY_STORAGE_LOCKED, is in the message and `cause`). */
  STORAGE_OPEN_FAILED: 'PEONY_STORAGE_OPEN_FAILED',
  /** start() called twice, or after stop(). */
  ALREADY_STARTED: 'PEONY_ALREADY_STARTED',
  /** The group router threw for a task: the task has no route (logged, rate-limited; cmd 10 is answered -10007). */
  ROUTER_FAILED: 'PEONY_ROUTER_FAILED',
} as const
export type MasterErrorCode = (typeof MasterErrorCode)[keyof typeof MasterErrorCode]

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

/** A counter split per worker slot and per group. */
export interface SplitCount {
  all: number
  workers: number[]
  groups: Record<string, number>
}

/** What `master.stats()` returns. Key names follow the original's `peonyctl stat`. */
export interface MasterStats {
  status: MasterStatus
  /** Brokers connected to intake now. */
  clients: number
  /** Worker threads alive now (not the configured count). */
  workers: number
  configured_workers: number
  /** Valid tasks received from intake. */
  client_req: number
  /** Tasks routed to each worker (including those then refused). */
  worker_req: SplitCount
  /** Tasks waiting in the master's lanes (not yet dispatched). */
  pending_tasks: SplitCount
  /** Tasks dispatched to a worker and not yet settled. */
  in_flight: SplitCount
  /** Lanes (routing keys) the master holds per worker: busy ones, and idle ones kept for reuse (at most laneKeepIdle per worker). */
  lanes: SplitCount
  /** Tasks not handled, per worker, per group, and by reason. */
  discard_tasks: SplitCount & { reasons: Record<DiscardReason, number> }
  /** Tasks whose handler had started when their worker died (answered -10001, never re-run). */
  lost_in_flight: SplitCount
  /** Tasks re-queued after their worker died before starting them. */
  requeued: number
  /** Workers respawned, per slot. */
  respawns: SplitCount
  /** The spare thread: 'loaded' (ready to replace a dead worker), 'loading', or 'none'; and how many respawns it served. */
  spare: { state: 'loaded' | 'loading' | 'none'; used: number }
  /** Outcomes of tasks in the workers (as last reported, twice a second), per worker and summed. */
  handlers: HandlerCounts & { workers: HandlerCounts[] }
  /** The storage thread: configured driver and state. */
  storage: { driver: string; state: string }
  /** The players' sessions, summed over workers (absent when the app defines none). */
  sessions: SessionCounts | undefined
  /** Counters of the workers' egress sender (in the egress thread) as last reported, once a second, and of the master's own (refusals). */
  egress: { workers: Record<string, unknown>; master: Record<string, unknown> }
  /** Dispatch messages posted to workers and the tasks they carried (tasks / messages = batch size). */
  dispatch: { messages: number; tasks: number }
  /** Worker deaths by cause. */
  deaths: Record<string, number>
  /** Client requests refused with Peony's codes, by code. */
  refused: Record<string, number>
  /** Frames or batch elements rejected by intake, by cause. */
  rejects: Record<string, number>
}

/** Task outcomes counted by the worker runtime. */
export interface HandlerCounts {
  handled: number
  ok: number
  failed: number
  no_handler: number
  bad_body: number
  timed_out: number
  interrupted: number
  load_failed: number
  hook_failed: number
}

/** The workers' session counters (see @peony/worker SessionStats), summed, plus each worker's last report. */
export type SessionCounts = Partial<SessionStats> & { workers: (Record<string, unknown> | undefined)[] }

const HANDLER_KEYS = [
  ['handled', 'handled'],
  ['ok', 'ok'],
  ['failed', 'failed'],
  ['no_handler', 'noHandler'],
  ['bad_body', 'badBody'],
  ['timed_out', 'timedOut'],
  ['interrupted', 'interrupted'],
  ['load_failed', 'loadFailed'],
  ['hook_failed', 'hookFailed'],
] as const

function emptyCounts(): HandlerCounts {
  return { handled: 0, ok: 0, failed: 0, no_handler: 0, bad_body: 0, timed_out: 0, interrupted: 0, load_failed: 0, hook_failed: 0 }
}

export type MasterStatus = 'opening' | 'open' | 'closing' | 'closed'

/** A worker thread: assigned to a slot, or the spare (loaded, waiting). */
interface Thread {
  worker: Worker
  slot: Slot | undefined
  loaded: boolean
  /** The thread reported that it could not load or start the app ('fatal'); its error event and exit follow. */
  fatal?: boolean
}

interface Group {
  id: number | string
  key: string
  slots: Slot[]
}

interface Slot {
  index: number
  group: Group
  indexInGroup: number
  sched: LaneScheduler
  worker: Worker | undefined
  live: boolean
  generation: number
  marks: Int32Array
  inFlight: InFlight
  /** Entries picked by the pump this turn, waiting to be posted. */
  outbox: Entry[]
  spawnedAt: number
  readyAt: number
  crashStreak: number
  respawnTimer: NodeJS.Timeout | undefined
  stopping: boolean
  lastHeartbeat: number
  lastHeartbeatAt: number
  killReason: string | undefined
  exited: Promise<void>
  onExit: (() => void) | undefined
  egressPort: MessagePort | undefined
  /** This incarnation's egress journal (thread/egress-journal.ts). */
  journal: SharedArrayBuffer
  /** Its exit is not a death: the worker reported 'stopped' (graceful stop), or destroy() ended it. */
  exitExpected: boolean
  /** Tasks queued for this slot since its last dispatch message. */
  sincePump: number
  /** The pending start of the current generation (resolved on 'ready'). */
  started: { resolve: () => void; reject: (err: Error) => void; initial: boolean } | undefined
  /** Its first start failed: start() rejects with that error, so what the dying thread reports next is not logged again. */
  firstStartFailed?: boolean
  /** Counters of earlier generations of this slot, and the current one's last report. */
  carried: HandlerCounts
  current: HandlerCounts
  /** The current generation's last sessions report. */
  sessions: Record<string, unknown> | undefined
  // stats
  workerReq: number
  discards: number
  lost: number
  respawns: number
}

/**
 * Posts a channel end made before its thread existed. The worker may have closed its end
 * meanwhile (a worker whose app has no sessions closes its storage port; a dead worker's ports
 * close with it), which closes this end too: transferring it throws DataCloneError, and there
 * is nothing left to hand over.
 */
function handOver(post: () => void): void {
  try {
    post()
  } catch (err) {
    if ((err as { name?: string }).name !== 'DataCloneError') throw err
  }
}

/**
 * Tasks that make a dispatch message worth sending before the end of the turn. Each message
 * wakes a worker thread, which costs far more than its size on this VM kind (a postMessage from
 * the intake loop measured ~90 µs of the master's time); 256 over 64 took the 1-task-per-message
 * benchmark from ~0.65 to 0.85 × the bare loop (docs/benchmarks.md). A partial batch still
 * leaves at the end of the turn.
 */
const DISPATCH_BATCH = 256

const HERE = import.meta.url
const FROM_SOURCE = HERE.endsWith('.ts')

/** Creates a master. Nothing is bound or spawned until `start()`. */
export function createMaster(input: MasterInput): Master {
  return new Master(input)
}

export class Master extends EventEmitter {
  readonly options: MasterOptions
  private _status: MasterStatus = 'closed'
  private started = false
  private readonly log: Logger
  private readonly rlog: LogLimiter
  private readonly groups: Group[]
  private readonly groupByKey = new Map<string, Group>()
  private readonly slots: Slot[] = []
  private readonly markMask: number
  private intake: IntakeServer | undefined
  private egress: EgressSender | undefined
  private egressThread: Worker | undefined
  /** Worker ends of channels made before the egress / storage thread existed: handed over when it starts. */
  private pendingEgressPorts: { slot: number; port: MessagePort; journal: SharedArrayBuffer }[] = []
  private pendingStoragePorts: MessagePort[] = []
  /** Opens once every initial worker thread has loaded the app (or failed): see start(). */
  private openIoGate: (() => void) | undefined
  private readonly threads = new WeakMap<Worker, Thread>()
  private storageThread: Worker | undefined
  private storageExited: Promise<void> = Promise.resolve()
  private storageState: 'none' | 'opening' | 'open' | 'closing' | 'closed' | 'failed' = 'none'
  private spare: Thread | undefined
  private spareUsed = 0
  private egressExited: Promise<void> = Promise.resolve()
  private egressClosing = false
  private egressStats: Record<string, unknown> = {}
  private readonly picked: Entry[] = []
  private readonly dirty = new Set<Slot>()
  private pumpScheduled = false
  /** From the start of a graceful stop on: client requests are refused (-10003) until intake is closed, and after. */
  private refusing = false
  /** Stop phases 1–2 (draining): a worker that dies is still replaced, to finish its players' tasks. */
  private draining = false
  private stopPromise: Promise<void> | undefined
  private monitor: NodeJS.Timeout | undefined
  private readonly drainWaiters = new Set<() => void>()
  // counters
  private clientReq = 0
  private requeued = 0
  private readonly reasons: Record<DiscardReason, number> = { queue_full: 0, shutting_down: 0, no_route: 0, stop_deadline: 0, queue_wait: 0 }
  private readonly refused: Record<string, number> = {}
  private readonly rejects: Record<string, number> = {}
  private readonly deaths: Record<string, number> = {}
  private noRouteDiscards = 0
  private dispatchMessages = 0
  private dispatchTasks = 0

  constructor(input: MasterInput) {
    super()
    const o: MasterOptions = {
      ...masterDefaultsFresh(),
      ...stripUndefined(input),
      blockedTimeoutMs: input.blockedTimeoutMs ?? Math.max(input.workTimeoutMs ?? masterDefaults.workTimeoutMs, 5_000),
    } as MasterOptions
    validate(o)
    this.options = o
    this.log = o.logger ?? pino({ level: process.env.PEONY_LOG_LEVEL ?? 'info' })
    this.rlog = new LogLimiter(this.log)
    // Marks must outlive every id a worker may hold: more than claimedMaxSize, a power of two.
    let cap = 1
    while (cap < o.claimedMaxSize * 4) cap <<= 1
    this.markMask = cap - 1
    this.groups = o.groups.map((g) => ({ id: g.id, key: String(g.id), slots: [] }))
    for (let gi = 0; gi < this.groups.length; gi++) {
      const group = this.groups[gi]!
      this.groupByKey.set(group.key, group)
      for (let i = 0; i < o.groups[gi]!.count; i++) {
        const slot: Slot = {
          index: this.slots.length,
          group,
          indexInGroup: i,
          sched: new LaneScheduler(o.laneMaxInFlight, o.laneKeepIdle),
          worker: undefined,
          live: false,
          generation: -1,
          marks: new Int32Array(0),
          inFlight: new InFlight(this.markMask),
          outbox: [],
          spawnedAt: 0,
          readyAt: 0,
          crashStreak: 0,
          respawnTimer: undefined,
          stopping: false,
          lastHeartbeat: 0,
          lastHeartbeatAt: 0,
          killReason: undefined,
          exited: Promise.resolve(),
          onExit: undefined,
          egressPort: undefined,
          journal: createJournal(0),
          exitExpected: false,
          started: undefined,
          sincePump: 0,
          carried: emptyCounts(),
          current: emptyCounts(),
          sessions: undefined,
          workerReq: 0,
          discards: 0,
          lost: 0,
          respawns: 0,
        }
        group.slots.push(slot)
        this.slots.push(slot)
      }
    }
  }

  get status(): MasterStatus {
    return this._status
  }

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

  /** Binds intake, connects egress, spawns every worker and waits until each is ready. */
  async start(): Promise<{ intakeEndpoints: string[]; workers: number }> {
    if (this.started) throw new PeonyError(MasterErrorCode.ALREADY_STARTED, 'master already started')
    this.started = true
    this._status = 'opening'
    const o = this.options
    // Errors of the master's own sockets (intake, its egress sender) repeat while their cause lasts.
    const logIoError = (err: PeonyError): void => this.rlog.error(err.code, { err, code: err.code }, err.message)
    this.egress = createEgressSender({
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
    const ioGate = new Promise<void>((resolve) => (this.openIoGate = resolve))
    const workersReady = this.slots.map((s) => this.spawn(s, true))
    const egressReady = ioGate.then(() => this.spawnEgressThread())
    const storageReady = ioGate.then(() => this.spawnStorageThread())
    this.checkIoGate()
    this.intake = createIntakeServer({
      endpoints: o.intakeEndpoints,
      maxFrameBytes: o.maxFrameBytes,
      onTasks: (tasks, _broker, frame, ranges) => this.onTasks(tasks, frame, ranges!),
      ranges: true,
      onReject: (rej) => this.onReject(rej),
      onError: logIoError,
    })
    const results = await Promise.allSettled([storageReady, egressReady, ...workersReady, this.intake.open()])
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) {
      await this.abortStart()
      throw failed.reason
    }
    const tick = Math.max(20, Math.min(500, Math.floor(o.blockedTimeoutMs / 5)))
    this.monitor = setInterval(() => this.checkHeartbeats(), tick)
    this.monitor.unref()
    this._status = 'open'
    this.ensureSpare()
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
    if (this._status === 'closed' && this.egressThread === undefined && this.spare === undefined && this.slots.every((s) => s.worker === undefined)) return
    this._status = 'closing'
    if (this.monitor) clearInterval(this.monitor)
    await this.dropSpare()
    await Promise.all(
      this.slots.map(async (s) => {
        s.stopping = true
        s.exitExpected = true
        if (s.respawnTimer) clearTimeout(s.respawnTimer)
        const w = s.worker
        if (w !== undefined) {
          await w.terminate()
          await s.exited
        }
      }),
    )
    await this.intake?.close().catch(() => {})
    await this.closeStorageThread(1_000)
    this.egressClosing = true
    const et = this.egressThread
    if (et !== undefined) {
      et.postMessage({ t: 'close', lingerMs: 0 } satisfies ToEgress)
      const timer = setTimeout(() => void et.terminate(), 1_000)
      await this.egressExited
      clearTimeout(timer)
    }
    await this.egress?.close({ lingerMs: 0 })
    for (const { port } of this.pendingEgressPorts.splice(0)) port.close()
    for (const port of this.pendingStoragePorts.splice(0)) port.close()
    this._status = 'closed'
  }

  /**
   * Starts the storage thread when `options.storage` is set: it opens the storage and serves
   * it to each worker over that worker's own port. Resolves when the storage is open.
   */
  private spawnStorageThread(): Promise<void> {
    const config = this.options.storage
    if (config === undefined) return Promise.resolve()
    const t = startThread('storage-main', { config } satisfies StorageBoot, [], { name: 'peony-storage' }, false)
    this.storageThread = t
    this.storageState = 'opening'
    for (const port of this.pendingStoragePorts.splice(0)) handOver(() => t.postMessage({ t: 'serve', port } satisfies ToStorage, [port]))
    let onExit!: () => void
    this.storageExited = new Promise((r) => (onExit = r))
    return new Promise<void>((resolve, reject) => {
      t.on('message', (m: FromStorage) => {
        if (m.t === 'ready') {
          this.storageState = 'open'
          this.log.debug({ driver: config.driver, supports: m.supports }, 'storage open')
          resolve()
        } else if (m.t === 'fatal') {
          this.storageState = 'failed'
          reject(
            new PeonyError(MasterErrorCode.STORAGE_OPEN_FAILED, `the ${config.driver} storage could not be opened: ${m.code ?? ''} ${m.message}`.replace('  ', ' '), {
              cause: Object.assign(new Error(m.message, m.cause === undefined ? undefined : { cause: new Error(m.cause) }), { code: m.code }),
            }),
          )
        } else if (m.t === 'closed') {
          if (m.error !== undefined) this.log.error({ err: m.error }, 'storage close failed')
        } else if (m.t === 'warn') {
          this.log.warn({ code: m.code }, m.message)
        }
      })
      t.on('error', (err) => {
        this.log.error({ err }, 'storage thread error')
        reject(err)
      })
      t.on('exit', (code) => {
        onExit()
        if (this.storageThread !== t) return
        this.storageThread = undefined
        if (this.storageState === 'closing') {
          this.storageState = 'closed'
          return
        }
        this.storageState = 'failed'
        // No application code runs there; a death is a driver bug. Sessions keep their dirty
        // state and retry (PEONY_STORAGE_CLOSED is retryable) until the server is restarted.
        this.log.error({ code }, 'storage thread died: session loads and flushes fail until restart')
        reject(new Error(`storage thread exited with code ${code}`))
      })
    })
  }

  /** Asks the storage thread to close the storage; terminates it after `ms`. */
  private async closeStorageThread(ms: number): Promise<void> {
    const t = this.storageThread
    if (t === undefined) return
    this.storageState = 'closing'
    t.postMessage({ t: 'close' } satisfies ToStorage)
    const timer = setTimeout(() => {
      this.log.warn('storage did not close in time; terminating its thread')
      void t.terminate()
    }, ms)
    await this.storageExited
    clearTimeout(timer)
  }

  /** A new channel between a worker and the storage thread; returns the worker's end. */
  private storageChannel(): MessagePort | undefined {
    if (this.options.storage === undefined) return undefined
    const t = this.storageThread
    if (t === undefined && this.storageState !== 'none') return undefined
    const { port1, port2 } = new MessageChannel()
    if (t === undefined) this.pendingStoragePorts.push(port1)
    else t.postMessage({ t: 'serve', port: port1 } satisfies ToStorage, [port1])
    return port2
  }

  /** Opens the I/O gate once no initial worker is still loading the app. */
  private checkIoGate(): void {
    if (this.openIoGate === undefined) return
    for (const s of this.slots) {
      const w = s.worker
      if (w !== undefined && s.started !== undefined && !this.threadLoaded(w)) return
    }
    const open = this.openIoGate
    this.openIoGate = undefined
    open()
  }

  private threadLoaded(w: Worker): boolean {
    return this.threads.get(w)?.loaded === true
  }

  /** Starts the egress thread (the one owner of the workers' DEALER to the forwarder). */
  private spawnEgressThread(): Promise<void> {
    const o = this.options
    const boot: EgressBoot = {
      forwarderEndpoint: o.forwarderEndpoint,
      sender: `${o.serverId}/egress.${randomBytes(4).toString('hex')}`,
      egressAck: o.egressAck,
      egressBufferMax: o.egressBufferMax,
      maxFrameBytes: o.maxFrameBytes,
      logLevel: this.log.level,
    }
    const t = startThread('egress-main', boot, [], { name: 'peony-egress' }, false)
    this.egressThread = t
    for (const { slot, port, journal } of this.pendingEgressPorts.splice(0)) handOver(() => t.postMessage({ t: 'port', slot, port, journal } satisfies ToEgress, [port]))
    let onExit!: () => void
    this.egressExited = new Promise((r) => (onExit = r))
    return new Promise<void>((resolve, reject) => {
      t.on('message', (m: FromEgress) => {
        if (m.t === 'ready') resolve()
        else if (m.t === 'closed' || m.t === 'stats') this.egressStats = { ...this.egressStats, ...m.stats }
      })
      t.on('error', (err) => {
        this.log.error({ err }, 'egress thread error')
        reject(err)
      })
      t.on('exit', (code) => {
        onExit()
        if (this.egressThread !== t) return
        this.egressThread = undefined
        if (this.egressClosing) return
        // Should never happen (no application code runs there); recover all the same.
        this.log.error({ code }, 'egress thread died: restarting it and reconnecting the workers')
        reject(new Error(`egress thread exited with code ${code}`))
        this.spawnEgressThread()
          .then(() => {
            for (const slot of this.slots) {
              if (slot.worker === undefined) continue
              const port = this.egressChannel(slot)
              slot.worker.postMessage({ t: 'egress', port } satisfies ToWorker, [port])
            }
          })
          .catch((err: unknown) => this.log.error({ err }, 'egress thread restart failed'))
      })
    })
  }

  /** A new channel between a worker slot and the egress thread; returns the worker's end. */
  private egressChannel(slot: Slot): MessagePort {
    const { port1, port2 } = new MessageChannel()
    if (this.egressThread === undefined) this.pendingEgressPorts.push({ slot: slot.index, port: port1, journal: slot.journal })
    else this.egressThread.postMessage({ t: 'port', slot: slot.index, port: port1, journal: slot.journal } satisfies ToEgress, [port1])
    slot.egressPort = port2
    return port2
  }

  // ───────────────────────────── intake ─────────────────────────────

  private onReject(rej: Rejection): void {
    this.rejects[rej.code] = (this.rejects[rej.code] ?? 0) + 1
    this.rlog.warn('reject:' + rej.code, { code: rej.code, index: rej.index, key: rej.key, reason: rej.message }, 'intake rejected a task')
  }

  private onTasks(tasks: Task[], frame: Uint8Array, ranges: number[]): void {
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

  private discard(slot: Slot | undefined, task: Task, reason: DiscardReason, code: number): void {
    this.reasons[reason]++
    if (slot) slot.discards++
    if (task.cmd === TaskCmd.CLIENT_REQ) this.answer(task, code)
    this.rlog.warn('discard:' + reason, { reason, code, slot: slot?.index, cmd: task.cmd }, 'task not handled')
  }

  /** Answers a client request with one of Peony's codes through egress 220 (protocol §4). */
  private answer(task: Task, code: number): void {
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

  private schedulePump(): void {
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
  private pump(slot: Slot): void {
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

  private onDone(slot: Slot, ids: Int32Array): void {
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

  private isDrained(): boolean {
    for (const s of this.slots) if (s.sched.queued > 0 || s.inFlight.size > 0) return false
    return true
  }

  // ───────────────────────────── supervision ─────────────────────────────

  /** Starts a worker thread; it loads the app and waits to be assigned a slot (or to be the spare). */
  private newThread(): Thread {
    const o = this.options
    const boot: ThreadBoot = { appModule: o.appModule, logLevel: this.log.level }
    const worker = startThread('worker-main', boot, [], { name: 'peony-worker', resourceLimits: o.resourceLimits }, /\.(c|m)?ts$/.test(o.appModule))
    const t: Thread = { worker, slot: undefined, loaded: false }
    this.threads.set(worker, t)
    worker.on('message', (m: FromWorker) => this.onThreadMessage(t, m))
    worker.on('error', (err) => this.onThreadError(t, err))
    worker.on('exit', (code) => this.onThreadExit(t, code))
    return t
  }

  private async dropSpare(): Promise<void> {
    const t = this.spare
    this.spare = undefined
    // Worker threads hold no ZeroMQ socket, so terminating one is safe.
    if (t !== undefined) await t.worker.terminate()
  }

  /** Keeps one loaded spare thread ready to replace the next worker that dies. */
  private ensureSpare(): void {
    if (this.options.spareWorkers < 1 || this.spare !== undefined) return
    if (this._status !== 'open' || this.refusing) return
    this.spare = this.newThread()
  }

  /**
   * Gives a slot a worker: the spare when one is loaded (a respawn then costs no thread start),
   * else a new thread. Resolves once it is assigned and its onWorkerStart hooks ran.
   */
  private spawn(slot: Slot, initial: boolean): Promise<void> {
    const o = this.options
    slot.generation++
    slot.marks = new Int32Array(new SharedArrayBuffer(4 * (this.markMask + 2)))
    slot.journal = createJournal()
    slot.exitExpected = false
    slot.killReason = undefined
    slot.live = false
    let t = this.spare
    if (t !== undefined && t.loaded) {
      this.spare = undefined
      this.spareUsed++
    } else t = this.newThread()
    t.slot = slot
    slot.worker = t.worker
    slot.spawnedAt = Date.now()
    slot.lastHeartbeat = 0
    slot.lastHeartbeatAt = Date.now()
    slot.exited = new Promise((resolve) => (slot.onExit = resolve))
    const egressPort = this.egressChannel(slot)
    const storagePort = this.storageChannel()
    const assignment: Assignment = {
      slot: slot.index,
      groupId: slot.group.id,
      index: slot.indexInGroup,
      serverId: o.serverId,
      generation: slot.generation,
      egressPort,
      journal: slot.journal,
      workTimeoutMs: o.workTimeoutMs,
      sab: slot.marks.buffer as SharedArrayBuffer,
      markMask: this.markMask,
      storagePort,
      sessions: o.sessions,
    }
    t.worker.postMessage({ t: 'assign', assignment } satisfies ToWorker, storagePort === undefined ? [egressPort] : [egressPort, storagePort])
    // Whatever the lanes hold goes to the thread right away; its port buffers until it listens.
    this.pump(slot)
    if (!initial) this.ensureSpare()
    return new Promise<void>((resolve, reject) => {
      slot.started = { resolve, reject, initial }
    })
  }

  /** True while the slot's first start is pending or has failed: its errors are start()'s rejection. */
  private startFailing(slot: Slot): boolean {
    return slot.started?.initial === true || slot.firstStartFailed === true
  }

  private settleStart(slot: Slot, err?: Error): void {
    const w = slot.started
    if (w === undefined) return
    slot.started = undefined
    this.checkIoGate()
    if (err === undefined) w.resolve()
    else if (w.initial) {
      slot.firstStartFailed = true
      w.reject(err)
    }
    else w.resolve() // a respawn that fails is handled by onExit (back-off), not by a caller
  }

  private onThreadMessage(t: Thread, m: FromWorker): void {
    const slot = t.slot
    if (m.t === 'loaded') {
      t.loaded = true
      this.checkIoGate()
      return
    }
    if (m.t === 'fatal') {
      t.fatal = true
      const what = slot ? 'worker failed to start' : 'spare worker failed to load the app'
      const appErr = Object.assign(new Error(m.message), { stack: m.stack ?? m.message })
      // During the first start the failure is start()'s rejection, logged once by its caller with
      // the app's own stack as the cause: not once per worker, and no respawn is tried.
      if (slot !== undefined && this.startFailing(slot)) this.log.debug({ slot: slot.index, err: appErr }, what)
      else this.rlog.error(what, { slot: slot?.index, code: MasterErrorCode.APP_LOAD_FAILED, err: appErr }, what)
      if (slot) this.settleStart(slot, new PeonyError(MasterErrorCode.APP_LOAD_FAILED, `worker ${slot.index} failed to start: ${m.message}`, { cause: appErr }))
      return
    }
    if (slot === undefined) return
    switch (m.t) {
      case 'done':
        this.onDone(slot, m.ids)
        break
      case 'ready':
        slot.live = true
        slot.readyAt = Date.now()
        this.settleStart(slot)
        this.log.debug({ slot: slot.index, generation: slot.generation, ms: slot.readyAt - slot.spawnedAt }, 'worker ready')
        break
      case 'stats': {
        const r = m.stats as Record<string, unknown>
        for (const [k, src] of HANDLER_KEYS) if (typeof r[src] === 'number') slot.current[k] = r[src]
        if (typeof r.sessions === 'object' && r.sessions !== null) slot.sessions = r.sessions as Record<string, unknown>
        break
      }
      case 'stopped':
        slot.exitExpected = true
        this.log.debug({ slot: slot.index, stats: m.stats }, 'worker stopped')
        break
    }
  }

  private onThreadError(t: Thread, err: Error): void {
    const slot = t.slot
    if (slot === undefined) {
      this.log.error({ err }, 'spare worker thread error')
      return
    }
    slot.killReason ??= (err as { code?: string }).code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'out_of_memory' : 'uncaught'
    // After 'fatal' this is the same error again (the thread ends by throwing it).
    if (t.fatal === true || this.startFailing(slot)) this.log.debug({ slot: slot.index, err }, 'worker error')
    else this.rlog.error('worker error', { slot: slot.index, err }, 'worker error')
    this.settleStart(slot, new PeonyError(MasterErrorCode.APP_LOAD_FAILED, `worker ${slot.index} failed to start: ${err.message}`, { cause: err }))
  }

  private onThreadExit(t: Thread, code: number): void {
    if (this.spare === t) this.spare = undefined
    const slot = t.slot
    if (slot === undefined) return
    const failedFirstStart = this.startFailing(slot)
    this.settleStart(slot, new PeonyError(MasterErrorCode.APP_LOAD_FAILED, `worker ${slot.index} exited (code ${code}) before it was ready`))
    this.onExit(slot, t.worker, code, failedFirstStart)
  }

  /** `failedFirstStart`: the thread died before it was ready during start(), which rejects: no log line of its own, no respawn. */
  private onExit(slot: Slot, worker: Worker, code: number, failedFirstStart = false): void {
    if (slot.worker !== worker) return
    for (const [k] of HANDLER_KEYS) slot.carried[k] += slot.current[k]
    slot.current = emptyCounts()
    slot.worker = undefined
    slot.live = false
    const done = slot.onExit
    slot.onExit = undefined
    if (slot.stopping && slot.exitExpected) {
      this.settleStoppedSlot(slot)
      done?.()
      return
    }
    // A death, during a stop too (a stop hook that exits, a worker past the stop deadline): counted,
    // logged, its tasks answered. A dead worker's sessions are gone (its players reload from
    // storage); a stopped one's last report stays.
    slot.sessions = undefined
    const cause = slot.killReason ?? (code === 0 ? 'exit' : 'exit_code')
    this.deaths[cause] = (this.deaths[cause] ?? 0) + 1
    this.accountDeath(slot)
    done?.()
    if (failedFirstStart) {
      this.log.debug({ slot: slot.index, generation: slot.generation, code, cause }, 'worker died before it was ready: the start fails')
      return
    }
    this.rlog.warn(`worker died ${cause}`, { slot: slot.index, generation: slot.generation, code, cause, stopping: slot.stopping || undefined }, 'worker died')
    if (slot.stopping || this._status === 'closed' || (this._status === 'closing' && !this.draining)) {
      // No respawn past stop phase 2: what it had not started is answered, not left queued.
      for (const e of slot.sched.drainQueued()) this.discard(slot, e.task, DiscardReason.SHUTTING_DOWN, ReplyCode.SHUTTING_DOWN)
      return
    }
    // Back off crash loops: a worker that lived less than 5 s counts as one more crash in a row.
    const lived = slot.readyAt > 0 ? Date.now() - slot.readyAt : 0
    slot.crashStreak = lived > 5_000 ? 1 : slot.crashStreak + 1
    const o = this.options
    const delay = slot.crashStreak <= 1 ? 0 : Math.min(o.respawnMaxDelayMs, o.respawnMinDelayMs * 2 ** (slot.crashStreak - 2))
    slot.readyAt = 0
    slot.respawnTimer = setTimeout(() => {
      slot.respawnTimer = undefined
      if (slot.stopping || this._status === 'closed') return
      slot.respawns++
      this.spawn(slot, false).catch(() => {})
    }, delay)
  }

  /**
   * A worker died holding tasks: those it never started go back to the head of their lanes in
   * order; those whose handler had started are lost (answered -10001, never re-run); those it
   * had finished but not yet reported count as done.
   */
  private accountDeath(slot: Slot): void {
    if (slot.inFlight.size === 0) return
    const marks = slot.marks
    const mask = this.markMask
    const requeue: Entry[] = []
    for (const e of slot.inFlight.inOrder()) {
      const id = e.id
      const mark = Atomics.load(marks, 1 + (id & mask))
      if (mark === id) {
        slot.lost++
        slot.sched.forgetInFlight(e)
        if (e.task.cmd === TaskCmd.CLIENT_REQ) this.answer(e.task, ReplyCode.HANDLER_FAILED)
      } else if (mark === -id) {
        slot.sched.settle(e)
      } else {
        requeue.push(e)
      }
    }
    slot.inFlight.clear()
    this.requeued += requeue.length
    slot.sched.requeue(requeue, performance.now())
    if (this.drainWaiters.size > 0 && this.isDrained()) for (const w of this.drainWaiters) w()
  }

  /** Terminates workers whose event loop stopped turning while they hold tasks. */
  private checkHeartbeats(): void {
    const now = Date.now()
    const limit = this.options.blockedTimeoutMs
    for (const slot of this.slots) {
      if (!slot.live || slot.worker === undefined) continue
      const hb = Atomics.load(slot.marks, 0)
      if (hb !== slot.lastHeartbeat || slot.inFlight.size === 0) {
        slot.lastHeartbeat = hb
        slot.lastHeartbeatAt = now
        continue
      }
      if (now - slot.lastHeartbeatAt > limit + HEARTBEAT_MS) {
        this.log.error({ slot: slot.index, blockedMs: now - slot.lastHeartbeatAt }, 'worker event loop blocked: terminating it')
        slot.killReason = 'blocked'
        slot.lastHeartbeatAt = now
        void slot.worker.terminate()
      }
    }
  }

  // ───────────────────────────── stop ─────────────────────────────

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
    if (this._status === 'closed' && !this.started) return
    const o = this.options
    const t0 = Date.now()
    const deadline = t0 + o.stopTimeoutMs
    const closeBudget = Math.min(o.workerCloseTimeoutMs, Math.floor(o.stopTimeoutMs / 2))
    this.log.info({ reason }, 'stopping: refusing new client requests')
    this._status = 'closing'
    // (1) + (2): refusing from here to the end (intake is closed in phase 3, and nothing read
    // before that may be accepted after an earlier refusal on its connection).
    this.refusing = true
    this.draining = true
    this.schedulePump()
    const drained = await this.waitDrained(deadline - closeBudget)
    if (!drained) {
      for (const slot of this.slots) {
        for (const e of slot.sched.drainQueued()) this.discard(slot, e.task, DiscardReason.STOP_DEADLINE, ReplyCode.SHUTTING_DOWN)
      }
      this.log.warn({ inFlight: this.slots.reduce((n, s) => n + s.inFlight.size, 0) }, 'stop: drain deadline passed')
    }
    // (3) intake closes; no more respawns; the spare goes.
    this.draining = false
    if (this.monitor) clearInterval(this.monitor)
    await this.dropSpare()
    await this.intake?.close().catch((err: unknown) => this.log.error({ err }, 'intake close failed'))
    // (3) + (4): workers run their stop hooks, flush, drain their egress, exit.
    const workerDeadline = Math.min(deadline, Date.now() + closeBudget)
    await Promise.all(
      this.slots.map(async (slot) => {
        slot.stopping = true
        if (slot.respawnTimer) {
          clearTimeout(slot.respawnTimer)
          slot.respawnTimer = undefined
        }
        const w = slot.worker
        if (w === undefined) return
        const msg: ToWorker = { t: 'stop' }
        w.postMessage(msg)
        const timer = setTimeout(() => {
          this.log.warn({ slot: slot.index }, 'stop: worker did not close in time; terminating')
          slot.killReason ??= 'stop_timeout'
          void w.terminate()
        }, Math.max(0, workerDeadline - Date.now()))
        await slot.exited
        clearTimeout(timer)
      }),
    )
    // (4b) every worker has written its sessions: close the storage.
    await this.closeStorageThread(Math.max(1_000, deadline - Date.now()))
    // (5) the workers' egress (egress thread) and the master's own, with what is left as linger.
    const linger = Math.max(0, deadline - Date.now())
    this.egressClosing = true
    const et = this.egressThread
    if (et !== undefined) {
      et.postMessage({ t: 'close', lingerMs: Math.max(0, linger - 50) } satisfies ToEgress)
      // At least 1 s, as destroy() gives it: terminating a thread that holds ZeroMQ sockets makes
      // zeromq.js abort the whole process (seen as SIGABRT at stop when a slow drain had used
      // the budget, on a loaded 2-core machine). A stop that overruns by < 1 s is the lesser harm.
      const timer = setTimeout(() => void et.terminate(), Math.max(linger + 100, 1_000))
      await this.egressExited
      clearTimeout(timer)
    }
    await this.egress?.close({ lingerMs: Math.max(0, deadline - Date.now()) })
    this._status = 'closed'
    this.rlog.flush()
    this.log.info({ ms: Date.now() - t0, stats: this.stats() }, 'stopped')
    this.emit('stopped')
  }

  private settleStoppedSlot(slot: Slot): void {
    // In-flight tasks of a worker that was terminated at the stop deadline are lost.
    if (slot.inFlight.size > 0) this.accountDeath(slot)
    for (const e of slot.sched.drainQueued()) this.discard(slot, e.task, DiscardReason.STOP_DEADLINE, ReplyCode.SHUTTING_DOWN)
  }

  private waitDrained(until: number): Promise<boolean> {
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

  // ───────────────────────────── stats ─────────────────────────────

  /** A snapshot of every counter (see MasterStats). */
  stats(): MasterStats {
    const split = (f: (s: Slot) => number): SplitCount => {
      const workers = this.slots.map(f)
      const groups: Record<string, number> = {}
      let all = 0
      for (const s of this.slots) {
        const v = workers[s.index]!
        groups[s.group.key] = (groups[s.group.key] ?? 0) + v
        all += v
      }
      return { all, workers, groups }
    }
    const discard = split((s) => s.discards)
    discard.all += this.noRouteDiscards
    return {
      status: this._status,
      clients: this.intake?.stats().brokers ?? 0,
      workers: this.slots.filter((s) => s.live).length,
      configured_workers: this.slots.length,
      client_req: this.clientReq,
      worker_req: split((s) => s.workerReq),
      pending_tasks: split((s) => s.sched.queued),
      in_flight: split((s) => s.inFlight.size),
      lanes: split((s) => s.sched.lanes.size),
      discard_tasks: { ...discard, reasons: { ...this.reasons } },
      lost_in_flight: split((s) => s.lost),
      requeued: this.requeued,
      respawns: split((s) => s.respawns),
      spare: { state: this.spare === undefined ? 'none' : this.spare.loaded ? 'loaded' : 'loading', used: this.spareUsed },
      handlers: this.handlerCounts(),
      storage: { driver: this.options.storage?.driver ?? 'none', state: this.storageState },
      sessions: this.sessionCounts(),
      dispatch: { messages: this.dispatchMessages, tasks: this.dispatchTasks },
      egress: { workers: { ...this.egressStats }, master: this.egress ? { ...this.egress.stats() } : {} },
      deaths: { ...this.deaths },
      refused: { ...this.refused },
      rejects: { ...this.rejects },
    }
  }

  private handlerCounts(): HandlerCounts & { workers: HandlerCounts[] } {
    const all = emptyCounts()
    const workers = this.slots.map((s) => {
      const c = emptyCounts()
      for (const [k] of HANDLER_KEYS) {
        c[k] = s.carried[k] + s.current[k]
        all[k] += c[k]
      }
      return c
    })
    return { ...all, workers }
  }

  /**
   * The workers' session counters, summed (latency: the largest p50/p99/max of any worker), with
   * each worker's last report; undefined when no worker reported sessions.
   */
  private sessionCounts(): SessionCounts | undefined {
    const workers = this.slots.map((s) => s.sessions)
    if (workers.every((w) => w === undefined)) return undefined
    const sum: Record<string, unknown> = {}
    const add = (into: Record<string, unknown>, from: Record<string, unknown>, maxKeys: boolean): void => {
      for (const [k, v] of Object.entries(from)) {
        if (typeof v === 'number') into[k] = maxKeys ? Math.max((into[k] as number | undefined) ?? 0, v) : ((into[k] as number | undefined) ?? 0) + v
        else if (typeof v === 'object' && v !== null) add((into[k] ??= {}) as Record<string, unknown>, v as Record<string, unknown>, maxKeys || k === 'loadLatency')
      }
    }
    for (const w of workers) if (w !== undefined) add(sum, w, false)
    return { ...(sum as object), workers } as SessionCounts
  }

  /** The live worker thread of a slot (for tests and tooling). */
  workerThread(slot: number): Worker | undefined {
    return this.slots[slot]?.worker
  }

}

/**
 * Starts one of this package's thread entries (`thread/<name>`). From TypeScript sources (tests,
 * `pnpm start`), or when the application module is TypeScript, the thread goes through a small
 * bootstrap that registers tsx first; from built JS it starts the entry directly.
 */
function startThread(
  name: 'worker-main' | 'egress-main' | 'storage-main',
  data: object,
  transferList: MessagePort[],
  opts: { name: string; resourceLimits?: MasterOptions['resourceLimits'] },
  appIsTs: boolean,
): Worker {
  const entry = new URL(`./thread/${name}.${FROM_SOURCE ? 'ts' : 'js'}`, HERE)
  const execArgv = inheritedExecArgv(FROM_SOURCE)
  const base = { execArgv, transferList, name: opts.name, resourceLimits: opts.resourceLimits }
  if (FROM_SOURCE || appIsTs) {
    const bootUrl = new URL('./thread/boot.mjs', FROM_SOURCE ? HERE : new URL('../src/master.ts', HERE))
    return new Worker(bootUrl, { ...base, workerData: { ...data, entry: entry.href } })
  }
  return new Worker(entry, { ...base, workerData: data })
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}

/** The node flags a worker inherits: the parent's, minus loaders (the bootstrap registers tsx itself). */
function inheritedExecArgv(fromSource: boolean): string[] {
  const out: string[] = []
  const argv = process.execArgv
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--import' || a === '--require' || a === '-r' || a === '--loader' || a === '--experimental-loader') {
      i++
      continue
    }
    if (/^--(import|require|loader|experimental-loader)=/.test(a)) continue
    out.push(a)
  }
  if (fromSource && !out.some((a) => a.startsWith('--conditions=@peony/source') || a === '-C')) out.push('--conditions=@peony/source')
  return out
}

/**
 * Throws on options a caller got wrong (a programmer error: TypeError/RangeError). The options
 * the server exposes too are checked against their shared definitions (`masterOptionKeys`: one
 * range each), every problem at once; the rest here.
 */
function validate(o: MasterOptions): void {
  if (typeof o.serverId !== 'string' || o.serverId.length === 0) throw new TypeError('master option serverId must be a non-empty string')
  if (typeof o.appModule !== 'string' || o.appModule.length === 0) throw new TypeError('master option appModule must be a path or file: URL')
  if (!Array.isArray(o.intakeEndpoints) || o.intakeEndpoints.length === 0) throw new TypeError('master option intakeEndpoints must list at least one endpoint')
  if (!Array.isArray(o.groups) || o.groups.length === 0) throw new TypeError('master option groups must list at least one group')
  if (o.router !== undefined && typeof o.router !== 'function') throw new TypeError('master option router must be a function')
  const problems = masterOptionSchema.checkOptions(o as unknown as Record<string, unknown>)
  if (problems.length > 0) {
    throw new RangeError(problems.map((p) => `master option ${p.key} must be ${p.expected} (got ${p.received})`).join('; '))
  }
  const total = o.groups.reduce((n, g) => n + g.count, 0)
  if (total > o.shards) throw new RangeError(`master option shards (${o.shards}) must be ≥ the number of workers (${total})`)
}
