/**
 * The settings of a worker's sessions (`SessionOptions`, resolved against their defaults), the
 * counters they report (`SessionStats`) and what the runtime gives the manager (`SessionBridge`).
 */
import type { PeonyError } from '@peony/protocol'
import type { AbstractStorage } from '@peony/storage'
import type { Clock, RuntimeLogger } from '../runtime/contract.ts'
import type { WorkerContext } from '../worker-context.ts'
import type { LatencySummary } from './latency-histogram.ts'
import type { GateStats } from './output-gate.ts'

export interface SessionOptions {
  /** Where sessions are loaded from and written to. */
  storage: AbstractStorage
  /** Period of the write-behind tick, which also checks evictions (default 1,000 ms). */
  flushIntervalMs?: number | undefined
  /** Bound on the age of an unflushed change while storage answers (default 5,000 ms; ≥ flushIntervalMs). */
  maxUnflushedAgeMs?: number | undefined
  /** Sessions per `writeFenced` call (default 500). */
  flushBatchSize?: number | undefined
  /** Deadline of one load (default 5,000 ms; 0 = none). */
  loadTimeoutMs?: number | undefined
  /** Evict a session idle this long (default 900,000 ms = 15 min; 0 = never). */
  idleTimeoutMs?: number | undefined
  /** Evict a session this long after its client closed (default 60,000 ms; 0 = on the next tick). */
  closeGraceMs?: number | undefined
  /** Estimated bytes of resident state above which least recently used sessions are evicted (default 256 MiB; 0 = no limit). */
  memoryBudgetBytes?: number | undefined
  /** Resident sessions above which least recently used ones are evicted (default 0 = no limit). */
  maxSessions?: number | undefined
  /** First retry delay after a failed flush (default 250 ms), doubled per failure up to retryMaxMs (default 15,000 ms). */
  retryBaseMs?: number | undefined
  retryMaxMs?: number | undefined
  /** At most this many firings per repeating durable timer when it is overdue on load (default 100); the rest are skipped and counted in `firing.skipped`. */
  catchUpLimit?: number | undefined
  /**
   * Group commit of the output gate: gated changes of every player are written in one fenced
   * batch, and their held outputs leave when it is stored. With no group commit in flight a
   * commit starts at the end of the turn; while one is in flight, the next starts this long
   * after the first change it carries (default 2 ms; 0 = at the end of the turn), or as soon as
   * the last one in flight is acknowledged.
   */
  gateIntervalMs?: number | undefined
}

/** Counters and gauges of a worker's sessions. */
export interface SessionStats {
  /** Sessions in memory. */
  resident: number
  /** Loads under way. */
  loading: number
  /** Sessions with unflushed changes (including the retry set). */
  dirty: number
  /** Dirty sessions waiting for a retry after a failed flush. */
  retrying: number
  /** Estimated bytes of resident state (the memory budget's measure). */
  bytes: number
  /** Age in ms of the oldest unflushed change (0 when nothing is dirty). */
  flushLagMs: number
  loads: number
  /** Loads that failed or timed out. */
  loadFailures: number
  loadTimeouts: number
  /** Load latency (claim + decode), ms. */
  loadLatency: LatencySummary
  /** writeFenced calls that succeeded. */
  flushes: number
  /** Sessions written. */
  flushedSessions: number
  /** writeFenced calls that failed (their sessions were kept dirty and retried). */
  flushErrors: number
  /** Sessions whose encode threw (kept dirty, retried). */
  encodeErrors: number
  /**
   * Sessions found changed, at eviction or stop, although nothing had marked them dirty (a
   * session object kept past its request; a missing `markDirty()` with `dirty: 'manual'`): they
   * were written all the same (PEONY_SESSION_UNMARKED_CHANGE).
   */
  unmarkedChanges: number
  /** Sessions dropped because storage refused their write (a newer owner). */
  fenced: number
  evictions: { idle: number; closed: number; memory: number; manual: number; fenced: number }
  /** Durable timer firings and in-memory session timer runs. */
  timersFired: number
  timerFailures: number
  /** The output gate (routes with `gate: 'stored'`). */
  gate: GateStats
}

/** What the runtime gives the manager. */
export interface SessionBridge {
  readonly worker: WorkerContext
  readonly clock: Clock
  readonly logger: RuntimeLogger
  /** Reports an error (log + onError). */
  report(err: PeonyError): void
  /** Queues `job` on the lane `key` (after its queued tasks). Ignored once the runtime stops. */
  enqueue(key: string | number, job: () => unknown): void
  /** True when the lane `key` has tasks queued or running. */
  laneBusy(key: string | number): boolean
}

const DEFAULTS = {
  flushIntervalMs: 1000,
  maxUnflushedAgeMs: 5000,
  flushBatchSize: 500,
  loadTimeoutMs: 5000,
  idleTimeoutMs: 900_000,
  closeGraceMs: 60_000,
  memoryBudgetBytes: 256 * 1024 * 1024,
  maxSessions: 0,
  retryBaseMs: 250,
  retryMaxMs: 15_000,
  catchUpLimit: 100,
  gateIntervalMs: 2,
} as const

export type Resolved = { -readonly [K in keyof typeof DEFAULTS]: number }

export function resolveOptions(o: SessionOptions): Resolved {
  const r = { ...DEFAULTS } as Resolved
  for (const k of Object.keys(DEFAULTS) as (keyof Resolved)[]) {
    const v = o[k]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`sessions.${k} must be a finite number >= 0, got ${String(v)}`)
    r[k] = v
  }
  for (const k of ['flushIntervalMs', 'flushBatchSize', 'retryBaseMs', 'retryMaxMs', 'catchUpLimit'] as const) {
    if (!(r[k] >= 1)) throw new RangeError(`sessions.${k} must be >= 1`)
  }
  if (r.maxUnflushedAgeMs < r.flushIntervalMs) r.maxUnflushedAgeMs = r.flushIntervalMs
  return r
}
