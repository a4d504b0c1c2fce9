/**
 * The master's stats: what `master.stats()` returns (key names follow the original's
 * `peonyctl stat`), the workers' handler counters, and how a snapshot is put together from the
 * counters each part keeps.
 */
import type { IntakeServer } from '@peony/broker-client'
import type { SessionStats } from '@peony/worker/host'
import type { DiscardReason, Dispatcher } from './dispatch.ts'
import type { IoThreads } from './io-threads.ts'
import type { MasterOptions } from './options.ts'
import type { Slot } from './slot.ts'
import type { Supervisor } from './supervision.ts'

export type MasterStatus = 'opening' | 'open' | 'closing' | 'closed'

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

/** Our key of each handler counter, and the worker runtime's. */
export const HANDLER_KEYS = [
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

export function emptyCounts(): HandlerCounts {
  return { handled: 0, ok: 0, failed: 0, no_handler: 0, bad_body: 0, timed_out: 0, interrupted: 0, load_failed: 0, hook_failed: 0 }
}

/** Where a snapshot's counters live. */
export interface StatsSources {
  status: MasterStatus
  options: MasterOptions
  slots: Slot[]
  intake: IntakeServer | undefined
  dispatch: Dispatcher
  supervisor: Supervisor
  io: IoThreads
}

/** A snapshot of every counter (see MasterStats). */
export function collectStats(src: StatsSources): MasterStats {
  const { slots, dispatch: d, supervisor: sup, io } = src
  const split = (f: (s: Slot) => number): SplitCount => {
    const workers = slots.map(f)
    const groups: Record<string, number> = {}
    let all = 0
    for (const s of slots) {
      const v = workers[s.index]!
      groups[s.group.key] = (groups[s.group.key] ?? 0) + v
      all += v
    }
    return { all, workers, groups }
  }
  const discard = split((s) => s.discards)
  discard.all += d.noRouteDiscards
  return {
    status: src.status,
    clients: src.intake?.stats().brokers ?? 0,
    workers: slots.filter((s) => s.live).length,
    configured_workers: slots.length,
    client_req: d.clientReq,
    worker_req: split((s) => s.workerReq),
    pending_tasks: split((s) => s.sched.queued),
    in_flight: split((s) => s.inFlight.size),
    lanes: split((s) => s.sched.lanes.size),
    discard_tasks: { ...discard, reasons: { ...d.reasons } },
    lost_in_flight: split((s) => s.lost),
    requeued: sup.requeued,
    respawns: split((s) => s.respawns),
    spare: { state: sup.spare === undefined ? 'none' : sup.spare.loaded ? 'loaded' : 'loading', used: sup.spareUsed },
    handlers: handlerCounts(slots),
    storage: { driver: src.options.storage?.driver ?? 'none', state: io.storageState },
    sessions: sessionCounts(slots),
    dispatch: { messages: d.dispatchMessages, tasks: d.dispatchTasks },
    egress: { workers: { ...io.egressStats }, master: d.egress ? { ...d.egress.stats() } : {} },
    deaths: { ...sup.deaths },
    refused: { ...d.refused },
    rejects: { ...d.rejects },
  }
}

function handlerCounts(slots: Slot[]): HandlerCounts & { workers: HandlerCounts[] } {
  const all = emptyCounts()
  const workers = slots.map((s) => {
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
function sessionCounts(slots: Slot[]): SessionCounts | undefined {
  const workers = slots.map((s) => s.sessions)
  if (workers.every((w) => w === undefined)) return undefined
  const sum: Record<string, unknown> = {}
  const add = (into: Record<string, unknown>, from: Record<string, unknown>, maxKeys: boolean): void => {
    for (const [k, v] of Object.entries(from)) {
      if (typeof v === 'number') into[k] = maxKeys ? Math.max((into[k] as number | undefined) ?? 0, v) : ((into[k] as number | undefined) ?? 0) + v
      else if (typeof v === 'object' && v !== null)
        add((into[k] ??= {}) as Record<string, unknown>, v as Record<string, unknown>, maxKeys || k === 'loadLatency')
    }
  }
  for (const w of workers) if (w !== undefined) add(sum, w, false)
  return { ...(sum as object), workers } as SessionCounts
}
