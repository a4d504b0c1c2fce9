/**
 * Options of the master. Every field has a default (see `resolveMasterOptions`); the server app
 * (`apps/peony-server`) maps its configuration file, environment and flags onto these.
 */
import type { ResourceLimits } from 'node:worker_threads'
import type { Task } from '@peony/protocol'
import type { Logger } from 'pino'
import type { SessionSettings, StorageConfig } from './thread/messages.ts'
import { KEEP_IDLE_LANES } from './lanes/lane-scheduler.ts'

export type { SessionSettings, StorageConfig }

/** A worker group of the original: `count` workers that share the tasks its router gives it. */
export interface GroupOptions {
  id: number | string
  count: number
}

/** Picks the group of a task (runs in the master for every task: keep it cheap and pure). */
export type GroupRouter = (task: Task) => number | string

export interface MasterOptions {
  /** This server's id: names its egress senders, and brokers choose servers by it (protocol §1.3). */
  serverId: string
  /** Path or file: URL of the application module, loaded in every worker thread. */
  appModule: string
  /** Intake ROUTER endpoints (default `['tcp://127.0.0.1:9250']`). */
  intakeEndpoints: string[]
  /** Largest accepted frame in bytes, checked before decoding (default 1 MiB). */
  maxFrameBytes: number
  /** The forwarder's ROUTER endpoint that egress DEALERs connect to (default `tcp://127.0.0.1:9260`). */
  forwarderEndpoint: string
  /** Add `sender`/`seq` to egress and keep unacknowledged messages for re-sending (default false). */
  egressAck: boolean
  /** Messages kept per egress sender while the forwarder is away; overflow is dropped and counted (default 100,000). */
  egressBufferMax: number
  /** Worker groups (default `[{ id: 1, count: 2 }]`). */
  groups: GroupOptions[]
  /** Group router (default: every task to the first group). */
  router?: GroupRouter | undefined
  /** Tasks queued in the master per worker, not yet dispatched; beyond it client requests are refused with -10002 (default 10,000). */
  queueMaxSize: number
  /**
   * A client request (task cmd 10; never 15/20/100) that has waited longer than this in the
   * master is answered -10002 instead of being started late (default 1,000 ms; 0 turns it off).
   */
  maxQueueWaitMs: number
  /** Tasks dispatched to one worker and not yet finished, at most (default 1,024). */
  claimedMaxSize: number
  /** At most this many tasks of one routing key are dispatched to its worker at a time (default 4). */
  laneMaxInFlight: number
  /**
   * Idle lanes (routing keys with nothing queued or running) each worker's scheduler keeps for
   * reuse, at most (default 8,192; about 100 bytes each). Past it the lane idle longest is
   * deleted; 0 deletes a lane as soon as it goes idle. This is all the master keeps for a
   * player who has left, so it bounds the master's memory per player, however many it has seen.
   */
  laneKeepIdle: number
  /** Fixed number of shards between routing keys and worker slots (default 256). */
  shards: number
  /** Per-handler deadline in ms; 0 disables it (default 30,000). A handler past it is answered -10001. */
  workTimeoutMs: number
  /** A worker whose event loop has not turned for this long while it holds tasks is terminated (default max(workTimeoutMs, 5,000)). */
  blockedTimeoutMs: number
  /** Whole graceful-stop budget in ms (default 30,000). */
  stopTimeoutMs: number
  /** Budget of stop phase 4 (workers flush and close) within the stop budget (default 10,000). */
  workerCloseTimeoutMs: number
  /**
   * Loaded spare worker threads kept ready to replace a worker that dies, so a respawn costs no
   * thread start (0 or 1; default 1). The spare holds the app module loaded but no slot and no
   * players; it costs one idle thread's memory.
   */
  spareWorkers: number
  /** `resourceLimits` of each worker thread. */
  resourceLimits?: ResourceLimits | undefined
  /** Respawn back-off of crash-looping workers. */
  respawnMinDelayMs: number
  respawnMaxDelayMs: number
  /** pino logger; a default one writes JSON to stdout. */
  logger?: Logger | undefined
  /**
   * The storage of the players' sessions, opened by the storage thread and served to every
   * worker (default: none; an app that defines sessions then fails to start with
   * PEONY_SESSION_NOT_CONFIGURED).
   */
  storage?: StorageConfig | undefined
  /** Write-behind, eviction and load settings of the sessions (every field defaults; see @peony/worker SessionOptions). */
  sessions?: SessionSettings | undefined
}

/** The defaults of every optional field. */
export const masterDefaults = {
  intakeEndpoints: ['tcp://127.0.0.1:9250'],
  maxFrameBytes: 1024 * 1024,
  forwarderEndpoint: 'tcp://127.0.0.1:9260',
  egressAck: false,
  egressBufferMax: 100_000,
  groups: [{ id: 1, count: 2 }],
  queueMaxSize: 10_000,
  maxQueueWaitMs: 1_000,
  claimedMaxSize: 1024,
  laneMaxInFlight: 4,
  laneKeepIdle: KEEP_IDLE_LANES,
  shards: 256,
  workTimeoutMs: 30_000,
  stopTimeoutMs: 30_000,
  workerCloseTimeoutMs: 10_000,
  spareWorkers: 1,
  respawnMinDelayMs: 50,
  respawnMaxDelayMs: 10_000,
} as const satisfies Partial<MasterOptions>

/** What `createMaster` accepts: `serverId` and `appModule` are required, the rest defaults. */
export type MasterInput = Pick<MasterOptions, 'serverId' | 'appModule'> & Partial<Omit<MasterOptions, 'serverId' | 'appModule'>>
