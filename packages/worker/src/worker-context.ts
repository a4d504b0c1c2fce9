/**
 * The worker as user code sees it (`req.worker`, and the argument of worker hooks): its identity
 * (WorkerInfo), logger, clock, egress, timers, and a `locals` bag for per-worker state such as
 * the players this worker holds in memory.
 */
import type { PeonyApp } from './app.ts'
import type { WorkerEgress } from './egress.ts'
import type { Clock, RuntimeLogger, WorkerInfo } from './runtime/contract.ts'
import type { WorkerTimers } from './timers.ts'
import type { SessionManager } from './session/session-manager.ts'

/** One worker's context, shared by every request it runs. */
export class WorkerContext {
  /** Identity of the worker (slot, group, index, server id, generation). */
  readonly info: Readonly<WorkerInfo>
  /** The app this worker runs. */
  readonly app: PeonyApp
  /** The runtime's logger. */
  readonly logger: RuntimeLogger
  /** The runtime's clock (a ManualClock in tests). */
  readonly clock: Clock
  /** Egress commands usable anywhere, e.g. from timers. */
  readonly egress: WorkerEgress
  /** Timers on the clock; cancelled when the worker stops. */
  readonly timers: WorkerTimers
  /** Free per-worker state for the application (players in memory, caches…). */
  readonly locals: Record<string | symbol, unknown> = {}
  #sessions: SessionManager | undefined = undefined

  constructor(info: WorkerInfo, app: PeonyApp, logger: RuntimeLogger, clock: Clock, egress: WorkerEgress, timers: WorkerTimers) {
    this.info = Object.freeze({ ...info })
    this.app = app
    this.logger = logger
    this.clock = clock
    this.egress = egress
    this.timers = timers
  }

  /** The worker's sessions: resident players, stats, flush and evict (disabled when the app defines none). */
  get sessions(): SessionManager {
    return this.#sessions as SessionManager
  }

  /** @internal Set once by the runtime. */
  _setSessions(m: SessionManager): void {
    this.#sessions = m
  }

  /** Global slot index (0 … workers−1), stable across respawns. */
  get slot(): number {
    return this.info.slot
  }
  /** The worker's group id. */
  get groupId(): number | string {
    return this.info.groupId
  }
  /** Index of this worker inside its group. */
  get index(): number {
    return this.info.index
  }
  /** The server id. */
  get serverId(): string {
    return this.info.serverId
  }
  /** How many times this slot was respawned (0 for the first start). */
  get generation(): number {
    return this.info.generation
  }

  /** A promise that resolves after `ms` on the worker's clock. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.clock.setTimeout(resolve, ms)
    })
  }
}
