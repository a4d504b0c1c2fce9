/**
 * Supervision of the worker threads: spawning a slot's worker (from the spare thread when one is
 * loaded), the start handshake, deaths and their accounting, respawn with back-off, the
 * blocked-loop watchdog, and telling workers to stop.
 *
 * When a worker dies, the shared marks tell which of its in-flight tasks had started (lost:
 * answered -10001) and which had not (re-queued at the head of their lanes, in order).
 */
import type { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import type { LogLimiter } from '@peony/log-limiter'
import { PeonyError, ReplyCode, TaskCmd } from '@peony/protocol'
import type { Entry } from './lanes/lane-scheduler.ts'
import { DiscardReason, type Dispatcher } from './dispatch.ts'
import { MasterErrorCode } from './errors.ts'
import type { IoThreads } from './io-threads.ts'
import type { MasterOptions } from './options.ts'
import type { Slot, Thread } from './slot.ts'
import { startThread } from './start-thread.ts'
import { emptyCounts, HANDLER_KEYS, type MasterStatus } from './stats.ts'
import { createJournal } from './thread/egress-journal.ts'
import { HEARTBEAT_MS, type Assignment, type FromWorker, type ThreadBoot, type ToWorker } from './thread/messages.ts'

/** The master's lifecycle as supervision needs it (the Master owns and updates it). */
export interface RunState {
  status: MasterStatus
  /** Stop phases 1–2 (draining): a worker that dies is still replaced, to finish its players' tasks. */
  draining: boolean
}

export class Supervisor {
  private readonly threads = new WeakMap<Worker, Thread>()
  /** The spare thread (loaded or loading), if any. */
  spare: Thread | undefined
  spareUsed = 0
  /** Worker deaths by cause. */
  readonly deaths: Record<string, number> = {}
  /** Tasks re-queued after their worker died before starting them. */
  requeued = 0
  /** Opens once every initial worker thread has loaded the app (or failed): see ioGate(). */
  private openIoGate: (() => void) | undefined
  private monitor: NodeJS.Timeout | undefined

  private readonly options: MasterOptions
  private readonly log: Logger
  private readonly rlog: LogLimiter
  private readonly slots: Slot[]
  private readonly markMask: number
  private readonly run: RunState
  private readonly dispatch: Dispatcher
  private readonly io: IoThreads

  constructor(options: MasterOptions, log: Logger, rlog: LogLimiter, slots: Slot[], markMask: number, run: RunState, dispatch: Dispatcher, io: IoThreads) {
    this.options = options
    this.log = log
    this.rlog = rlog
    this.slots = slots
    this.markMask = markMask
    this.run = run
    this.dispatch = dispatch
    this.io = io
  }

  // ───────────────────────────── the I/O gate ─────────────────────────────

  /** A promise that resolves once no initial worker is still loading the app (call before the first spawn). */
  ioGate(): Promise<void> {
    return new Promise<void>((resolve) => (this.openIoGate = resolve))
  }

  /** Opens the I/O gate once no initial worker is still loading the app. */
  checkIoGate(): void {
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

  // ───────────────────────────── threads and the spare ─────────────────────────────

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

  async dropSpare(): Promise<void> {
    const t = this.spare
    this.spare = undefined
    // Worker threads hold no ZeroMQ socket, so terminating one is safe.
    if (t !== undefined) await t.worker.terminate()
  }

  /** Keeps one loaded spare thread ready to replace the next worker that dies. */
  ensureSpare(): void {
    if (this.options.spareWorkers < 1 || this.spare !== undefined) return
    if (this.run.status !== 'open' || this.dispatch.refusing) return
    this.spare = this.newThread()
  }

  // ───────────────────────────── spawn and start ─────────────────────────────

  /**
   * Gives a slot a worker: the spare when one is loaded (a respawn then costs no thread start),
   * else a new thread. Resolves once it is assigned and its onWorkerStart hooks ran.
   */
  spawn(slot: Slot, initial: boolean): Promise<void> {
    const o = this.options
    slot.generation++
    slot.marks = new Int32Array(new SharedArrayBuffer(4 * (this.markMask + 2)))
    slot.journal = createJournal()
    slot.exitExpected = false
    slot.killReason = undefined
    slot.live = false
    let t = this.spare
    if (t?.loaded) {
      this.spare = undefined
      this.spareUsed++
    } else t = this.newThread()
    t.slot = slot
    slot.worker = t.worker
    slot.spawnedAt = Date.now()
    slot.lastHeartbeat = 0
    slot.lastHeartbeatAt = Date.now()
    slot.exited = new Promise((resolve) => (slot.onExit = resolve))
    const egressPort = this.io.egressChannel(slot)
    const storagePort = this.io.storageChannel()
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
    this.dispatch.pump(slot)
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
    } else w.resolve() // a respawn that fails is handled by onExit (back-off), not by a caller
  }

  // ───────────────────────────── what threads report ─────────────────────────────

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
        this.dispatch.onDone(slot, m.ids)
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

  // ───────────────────────────── deaths and respawn ─────────────────────────────

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
    if (slot.stopping || this.run.status === 'closed' || (this.run.status === 'closing' && !this.run.draining)) {
      // No respawn past stop phase 2: what it had not started is answered, not left queued.
      for (const e of slot.sched.drainQueued()) this.dispatch.discard(slot, e.task, DiscardReason.SHUTTING_DOWN, ReplyCode.SHUTTING_DOWN)
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
      if (slot.stopping || this.run.status === 'closed') return
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
        if (e.task.cmd === TaskCmd.CLIENT_REQ) this.dispatch.answer(e.task, ReplyCode.HANDLER_FAILED)
      } else if (mark === -id) {
        slot.sched.settle(e)
      } else {
        requeue.push(e)
      }
    }
    slot.inFlight.clear()
    this.requeued += requeue.length
    slot.sched.requeue(requeue, performance.now())
    this.dispatch.checkDrained()
  }

  private settleStoppedSlot(slot: Slot): void {
    // In-flight tasks of a worker that was terminated at the stop deadline are lost.
    if (slot.inFlight.size > 0) this.accountDeath(slot)
    for (const e of slot.sched.drainQueued()) this.dispatch.discard(slot, e.task, DiscardReason.STOP_DEADLINE, ReplyCode.SHUTTING_DOWN)
  }

  // ───────────────────────────── the blocked-loop watchdog ─────────────────────────────

  /** Starts the monitor that checks the workers' heartbeats, every `blockedTimeoutMs / 5` ms (clamped to 20–500). */
  startMonitor(): void {
    const tick = Math.max(20, Math.min(500, Math.floor(this.options.blockedTimeoutMs / 5)))
    this.monitor = setInterval(() => this.checkHeartbeats(), tick)
    this.monitor.unref()
  }

  stopMonitor(): void {
    if (this.monitor) clearInterval(this.monitor)
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

  // ───────────────────────────── the end ─────────────────────────────

  /**
   * Stop phases 3–4: no more respawns; each worker is told to stop (it runs its stop hooks,
   * flushes, drains its egress, exits) and is terminated if it has not exited by `deadline`.
   */
  async stopWorkers(deadline: number): Promise<void> {
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
        const timer = setTimeout(
          () => {
            this.log.warn({ slot: slot.index }, 'stop: worker did not close in time; terminating')
            slot.killReason ??= 'stop_timeout'
            void w.terminate()
          },
          Math.max(0, deadline - Date.now()),
        )
        await slot.exited
        clearTimeout(timer)
      }),
    )
  }

  /** Terminates every worker at once (destroy()): their in-flight tasks are lost, nothing is respawned. */
  async terminateWorkers(): Promise<void> {
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
  }
}
