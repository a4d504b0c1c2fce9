/**
 * Scheduling. Tasks are grouped in lanes by routing key (`routingKey(task)`: the uid, else the
 * connection, else the keyless lane ''). The tasks of one lane run strictly one after another,
 * each to full settlement (pre-hooks, handler, onRequestEnd), even when they are async; other
 * lanes proceed while one awaits. A lane with nothing queued and nothing running is deleted.
 * Sync tasks run to completion inside `push`. Internal work (session timers) queues on a lane as
 * a job, behind its tasks.
 *
 * Activity: onWorkerActivate runs when the worker goes from idle to busy (tasks wait for it);
 * onWorkerDeactivate when nothing is queued or running at the end of the current microtask turn
 * (so a batch dispatched in one go gives one activate/deactivate pair). Tasks dispatched while
 * deactivate hooks run wait for them, then for a new activation. Until `open()` (the worker's
 * start hooks have run) tasks only queue.
 */
import { routingKey, type RoutingKey, type Task } from '@peony/protocol'
import { isThenable, type AnyHook } from '../hooks.ts'
import type { WorkerTimers } from '../timers.ts'
import type { WorkerContext } from '../worker-context.ts'
import type { RuntimeLogger } from './contract.ts'
import type { OnHooks } from './on-hooks.ts'

// Activity phases.
const GATED = 0 // not started yet: tasks queue
const IDLE = 1
const ACTIVATING = 2
const BUSY = 3
const DEACTIVATING = 4

/** One routing key's queue: `q` holds id, task, id, task, … from `head` on. */
interface Lane {
  readonly key: RoutingKey
  q: unknown[]
  head: number
  active: boolean
}

/** Internal work on a lane (session timers): queued with id -1. */
export type LaneJob = () => unknown

/** What runs the lanes' tasks. */
export interface TaskRunner {
  /** Runs one task; settles it (`Lanes.settled`) synchronously, or returns a promise that resolves once it has. */
  runTask(id: number, task: Task): void | Promise<void>
  /** Settles a task whose runTask threw (an internal error) without settling it. */
  settleFailed(id: number): void
}

/** The lanes of one runtime and the worker's activity. */
export class Lanes {
  readonly #log: RuntimeLogger
  readonly #timers: WorkerTimers
  readonly #onHooks: OnHooks
  readonly #worker: WorkerContext

  #runner: TaskRunner | undefined = undefined
  #activateHooks: readonly AnyHook[] = []
  #deactivateHooks: readonly AnyHook[] = []

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

  constructor(log: RuntimeLogger, timers: WorkerTimers, onHooks: OnHooks, worker: WorkerContext) {
    this.#log = log
    this.#timers = timers
    this.#onHooks = onHooks
    this.#worker = worker
  }

  /** Tasks started and not yet settled. */
  get running(): number {
    return this.#running
  }

  /** Tasks dispatched and not yet started. */
  get queued(): number {
    return this.#queued
  }

  /** Lanes with something queued or running. */
  get size(): number {
    return this.#lanes.size
  }

  /** True when a lane has something queued or running. */
  has(key: RoutingKey): boolean {
    return this.#lanes.has(key)
  }

  /** True when the worker is idle (started, nothing queued or running, deactivated). */
  get idle(): boolean {
    return this.#phase === IDLE
  }

  /** Calls `fn` once the worker is idle next. */
  onIdle(fn: () => void): void {
    this.#idleWaiters.push(fn)
  }

  /** The worker has started: tasks run from now on, through `runner`, between the activity hooks. */
  open(runner: TaskRunner, activateHooks: readonly AnyHook[], deactivateHooks: readonly AnyHook[]): void {
    this.#runner = runner
    this.#activateHooks = activateHooks
    this.#deactivateHooks = deactivateHooks
    this.#phase = IDLE
    if (this.#queued > 0) this.#activate()
  }

  /** Queues a task on its lane; runs it now when the lane is free and the worker busy. */
  push(id: number, task: Task): void {
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

  /** Queues internal work (a session timer) on a lane, behind its tasks. */
  pushJob(key: RoutingKey, job: LaneJob): void {
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

  /** Adds the ids of the tasks queued on a lane (not its jobs) to `into`. */
  addQueuedIds(key: RoutingKey, into: Set<number>): void {
    const l = this.#lanes.get(key)
    if (l !== undefined) for (let i = l.head; i < l.q.length; i += 2) if ((l.q[i] as number) >= 0) into.add(l.q[i] as number)
  }

  /** A running task has settled (first half: the counts; `afterSettled` follows). */
  settled(): void {
    this.#running--
    this.#doneCount++
  }

  /** After a task settled: goes idle at the end of the turn if nothing is left. */
  afterSettled(): void {
    if (this.#running === 0 && this.#queued === 0) this.#scheduleIdleCheck()
  }

  /** Runs a lane job; undefined when it finished synchronously, else a promise that never rejects. */
  #runJob(job: LaneJob): Promise<void> | undefined {
    let r: unknown
    try {
      r = job()
    } catch (err) {
      this.#log.error({ err }, 'internal error in a lane job')
    }
    if (isThenable(r)) {
      return Promise.resolve(r).then(
        () => this.#jobDone(),
        (err: unknown) => {
          this.#log.error({ err }, 'internal error in a lane job')
          this.#jobDone()
        },
      )
    }
    this.#jobDone()
    return undefined
  }

  #jobDone(): void {
    this.#timers.kick()
    this.#running--
    if (this.#running === 0 && this.#queued === 0) this.#scheduleIdleCheck()
  }

  /**
   * Runs a lane's tasks one after another. Synchronous while tasks settle synchronously (no
   * promise, no microtask hop); the first task that returns a promise continues the lane in
   * #drainAfter once it settles.
   */
  #drain(lane: Lane): void {
    const runner = this.#runner as TaskRunner
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
        r = runner.runTask(id, task)
      } catch (err) {
        // Not reachable by design (runTask catches user errors); never lose a task's settlement.
        this.#log.error({ err, taskId: id }, 'internal error while running a task')
        if (this.#doneCount === before) runner.settleFailed(id)
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
    this.#phaseHooks('onWorkerActivate', this.#activateHooks, this.#becomeBusy)
  }

  /** Runs the activate/deactivate hooks (if any), then `next`, synchronously when they are. */
  #phaseHooks(name: 'onWorkerActivate' | 'onWorkerDeactivate', hooks: readonly AnyHook[], next: () => void): void {
    const r = hooks.length === 0 ? undefined : this.#onHooks.run(name, hooks, this.#worker)
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
    this.#phaseHooks('onWorkerDeactivate', this.#deactivateHooks, this.#afterDeactivate)
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
}
