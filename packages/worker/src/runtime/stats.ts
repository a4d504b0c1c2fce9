/**
 * The runtime's counters: the public WorkerRuntimeStats shape, the counters a runtime keeps (the
 * stats minus the gauges the lanes and the session manager report), and which counter each task
 * outcome goes to.
 */
import type { SessionStats } from '../session/session-manager.ts'
import type { TaskOutcome } from './contract.ts'

/** Counters and gauges of a runtime. Every settled task counts in `handled` and in exactly one outcome counter. */
export interface WorkerRuntimeStats {
  /** Tasks settled. */
  handled: number
  /** Outcome 'ok'. */
  ok: number
  /** Outcome 'failed': a handler, a task's on-hook or a pre-hook threw. */
  failed: number
  /** Outcome 'no-handler': unknown body cmd (answered -10000), or a generic task with no onTask hook. */
  noHandler: number
  /** Outcome 'bad-body': undecodable body (answered -10004). */
  badBody: number
  /** Tasks that passed their work deadline (counted when it passes; their outcome is 'timed-out'). */
  timedOut: number
  /** Outcome 'interrupted'. */
  interrupted: number
  /** Outcome 'load-failed': the player's session could not be loaded (answered -10005). */
  loadFailed: number
  /** Hook calls that threw or rejected (pre-hooks, onRequestEnd, worker hooks), except the onClientCreated/onClientClosed/onTask hooks serving a task, which count as `failed`. onError hooks are only logged. */
  hookFailed: number
  /** Tasks started and not yet settled. */
  running: number
  /** Tasks dispatched and not yet started. */
  queued: number
  /** Lanes (routing keys) with something queued or running. */
  lanes: number
  /** The sessions' counters, when the app defines sessions. */
  sessions?: SessionStats
}

/** The counters a runtime keeps itself; shared by the parts that count (settlement, watchdog, hooks). */
export type Counters = Omit<WorkerRuntimeStats, 'running' | 'queued' | 'lanes' | 'sessions'>

/** A fresh set of counters, all zero. */
export function newCounters(): Counters {
  return { handled: 0, ok: 0, failed: 0, noHandler: 0, badBody: 0, timedOut: 0, interrupted: 0, loadFailed: 0, hookFailed: 0 }
}

/** The counter of each outcome. */
export const OUTCOME_COUNTER: Record<TaskOutcome, keyof Counters | undefined> = {
  ok: 'ok',
  failed: 'failed',
  'no-handler': 'noHandler',
  'bad-body': 'badBody',
  'timed-out': undefined, // counted when the deadline passes
  interrupted: 'interrupted',
  'load-failed': 'loadFailed',
}
