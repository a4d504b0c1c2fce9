/**
 * The contract between the worker runtime (this package) and whatever hosts it: the master's
 * worker thread in production, the test harness in unit tests. The host feeds tasks in with
 * `dispatch`, learns when each task's first user code starts (`onTaskStart`) and when it has
 * settled (`onTaskDone`), and gives the runtime an egress sink for replies and pushes.
 */
import type { EgressMessage, Task } from '@peony/protocol'

/** An injectable clock: production uses the system clock, tests advance a manual one. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

/** Where the runtime puts outgoing messages. Never blocks; the host buffers and sends. */
export interface EgressSink {
  /**
   * Queues one egress message. `taskId` is the id of the dispatched task whose request produced
   * it (replies, pushes and other `req.*` helpers, and the runtime's own error replies);
   * `undefined` for messages sent outside a request (timers, worker hooks). Hosts may ignore it;
   * the test harness uses it to attribute egress to the injected task. `reply` is true for the
   * one answer to the task's client request (`req.reply`, the runtime's own error replies):
   * once it is sent, the request is answered even if the thread dies before the task settles.
   */
  send(msg: EgressMessage, taskId?: number, reply?: boolean): void
}

/** How a dispatched task ended, reported to the host once it has settled. */
export type TaskOutcome =
  | 'ok' // the handler (or hook) ran and settled
  | 'no-handler' // no route for the body cmd: answered -10000
  | 'bad-body' // body not decodable: answered -10004
  | 'failed' // the handler threw or rejected: answered -10001
  | 'timed-out' // the handler passed its deadline (answered -10001) and settled later
  | 'interrupted' // a pre-hook called interrupt()
  | 'load-failed' // the player's session could not be loaded: answered -10005

/** Identity of the worker the runtime runs in. */
export interface WorkerInfo {
  /** Global slot index (0 … workers−1), stable across respawns. */
  slot: number
  groupId: number | string
  /** Index of this worker inside its group. */
  index: number
  serverId: string
  /** Incremented each time the slot is respawned (0 for the first start). */
  generation: number
}

/** What a host drives: the WorkerRuntime implements it. */
export interface RuntimeHandle {
  /** Runs the onWorkerStart hooks; dispatch is allowed once it was called. */
  start(): Promise<void>
  /** Hands one task to the runtime (never throws for bad task contents). `id` is the host's task id. */
  dispatch(id: number, task: Task): void
  /** Waits for every dispatched task to settle, then runs the onWorkerStop hooks. */
  stop(): Promise<void>
}

/** Minimal logger interface (pino-compatible). */
export interface RuntimeLogger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}
