/**
 * @peony/worker/testing: run an app's handlers without sockets, threads or sleeps.
 *
 * ```ts
 * const h = createTestHarness(app)
 * const { replies } = await h.inject({ cmd: 'echo', data: { hi: 1 }, uid: 7 })
 * expect(replies[0]).toMatchObject({ cmd: 'echo', ret: 0, data: { hi: 1 } })
 * await h.stop()
 * ```
 *
 * The harness hosts a real WorkerRuntime on a ManualClock: time moves only with
 * `h.advance(ms)`, so work timeouts, `worker.sleep` and timers are tested deterministically.
 */
import type { EgressMessage, Int64, PushBody, ReplyBody, Task } from '@peony/protocol'
import type { PeonyApp } from '../app.ts'
import { ManualClock } from '../clock.ts'
import { encodeRequestBody } from '../egress.ts'
import { createMemoryLogger, type LogEntry } from '../logger.ts'
import type { BodyCmd } from '../routes.ts'
import type { RuntimeLogger, TaskOutcome, WorkerInfo } from '../runtime/contract.ts'
import { WorkerRuntime, type WorkerRuntimeStats } from '../runtime/worker-runtime.ts'
import type { WorkerContext } from '../worker-context.ts'
import { MemoryStorage, type AbstractStorage } from '@peony/storage'
import type { SessionOptions } from '../session/session-manager.ts'

/** Options of `createTestHarness`. */
export interface TestHarnessOptions {
  /** The clock (default: a new ManualClock at 0). */
  clock?: ManualClock | undefined
  /** Worker identity (default slot 0, group 1, index 0, server 'test', generation 0). */
  info?: Partial<WorkerInfo> | undefined
  /** Work deadline in ms (default 30,000; it passes only when the test advances the clock). */
  workTimeoutMs?: number | undefined
  /** Logger (default: a memory logger whose entries are `harness.logs`). */
  logger?: RuntimeLogger | undefined
  /**
   * Session settings, for an app that defines sessions. The storage defaults to a new
   * MemoryStorage (`harness.storage`); pass one storage to several harnesses to play two owners
   * of the same players.
   */
  sessions?: (Omit<SessionOptions, 'storage'> & { storage?: AbstractStorage | undefined }) | undefined
}

/**
 * Shorthand for a client request: the body `{cmd, sn, data}` is encoded with the app's codec.
 * Defaults: task cmd 10, nodeId 1, connId 1, a fresh sn. Set a key to `undefined` explicitly to
 * leave it out of the task (`{ cmd: 'x', uid: 7, nodeId: undefined, connId: undefined, taskCmd: 100 }`).
 * For task cmds other than 10/100 a body is encoded only when `cmd` is given.
 */
export interface InjectRequest extends Partial<Omit<Task, 'cmd' | 'body'>> {
  /** Body cmd (required for task cmd 10/100). */
  cmd?: BodyCmd | undefined
  data?: unknown
  sn?: Int64 | undefined
  /** Task cmd (default 10). 15 = client created, 20 = client closed. */
  taskCmd?: number | undefined
}

/** What one injected task produced. */
export interface InjectResult {
  /** The id the harness dispatched the task with. */
  id: number
  /** How the task ended (as reported to `onTaskDone`). */
  outcome: TaskOutcome
  /** Decoded reply bodies (220s with a `ret`) this task sent to its own connection. */
  replies: ReplyBody[]
  /** Decoded pushes this task sent: 220s without `ret` to its connection, and every 230 row. */
  pushes: PushBody[]
  /** Every egress message this task sent (its request's helpers and the runtime's error replies). */
  egress: EgressMessage[]
}

/** A running harness. */
export interface TestHarness {
  /**
   * Dispatches a task (a Task when the input has a `body` key, else an InjectRequest shorthand)
   * and resolves when it has settled. The dispatch itself happens synchronously, so several
   * `inject` calls without `await` keep their order.
   */
  inject(input: Task | InjectRequest): Promise<InjectResult>
  /** The manual clock. */
  readonly clock: ManualClock
  /** Moves the clock (ManualClock.advanceAsync), letting async handlers run between timers. */
  advance(ms: number): Promise<number>
  /** Every egress message sent, by any task or timer, in order. */
  readonly egress: EgressMessage[]
  /** Log entries of the default memory logger (empty when a logger was passed). */
  readonly logs: LogEntry[]
  /** The hosted runtime. */
  readonly runtime: WorkerRuntime
  /** The worker context (timers, egress, locals). */
  readonly worker: WorkerContext
  /** Resolves once `runtime.start()` (the onWorkerStart hooks) finished. */
  readonly ready: Promise<void>
  /** The sessions' storage (undefined when the app defines no sessions). */
  readonly storage: AbstractStorage | undefined
  /** The runtime's stats. */
  stats(): WorkerRuntimeStats
  /** Stops the runtime (waits for tasks, runs onWorkerStop hooks). */
  stop(): Promise<void>
}

interface Pending {
  task: Task
  egress: EgressMessage[]
  resolve: (r: InjectResult) => void
}

/** Hosts `app` in a WorkerRuntime with a ManualClock and an in-memory egress sink, and starts it. */
export function createTestHarness(app: PeonyApp, options: TestHarnessOptions = {}): TestHarness {
  const clock = options.clock ?? new ManualClock()
  const memory = createMemoryLogger()
  const logger = options.logger ?? memory
  const codec = app.bodyCodec
  const all: EgressMessage[] = []
  const pending = new Map<number, Pending>()
  let nextId = 1
  let nextSn = 1

  const info: WorkerInfo = { slot: 0, groupId: 1, index: 0, serverId: 'test', generation: 0, ...options.info }

  function collect(p: Pending, id: number, outcome: TaskOutcome): InjectResult {
    const replies: ReplyBody[] = []
    const pushes: PushBody[] = []
    const t = p.task
    for (const m of p.egress) {
      if (m.cmd === 220) {
        if (m.nodeId !== t.nodeId || m.connId !== t.connId) continue
        const b = tryDecode(m.body)
        if (b === undefined) continue
        if ('ret' in b) replies.push(b)
        else pushes.push(b)
      } else if (m.cmd === 230) {
        for (const row of m.rows) {
          const b = tryDecode(row.body)
          if (b !== undefined && !('ret' in b)) pushes.push(b)
        }
      }
    }
    return { id, outcome, replies, pushes, egress: p.egress }
  }

  function tryDecode(body: Uint8Array): ReplyBody | PushBody | undefined {
    try {
      return codec.decodeReply(body)
    } catch {
      return undefined
    }
  }

  const storage = app.sessionDefinition === undefined ? undefined : (options.sessions?.storage ?? new MemoryStorage())
  const runtime = new WorkerRuntime({
    app,
    sessions: storage === undefined ? undefined : { ...options.sessions, storage },
    info,
    clock,
    logger,
    workTimeoutMs: options.workTimeoutMs ?? 30_000,
    egress: {
      send(msg: EgressMessage, taskId?: number): void {
        all.push(msg)
        if (taskId !== undefined) pending.get(taskId)?.egress.push(msg)
      },
    },
    onTaskDone(id: number, outcome: TaskOutcome): void {
      const p = pending.get(id)
      if (p === undefined) return
      pending.delete(id)
      p.resolve(collect(p, id, outcome))
    },
  })
  const ready = runtime.start()

  function toTask(input: Task | InjectRequest): Task {
    if ('body' in input) return input as Task
    const r = input as InjectRequest
    const taskCmd = r.taskCmd ?? 10
    const task: Task = {
      cmd: taskCmd,
      uid: r.uid,
      nodeId: 'nodeId' in r ? r.nodeId : 1,
      connId: 'connId' in r ? r.connId : 1,
      tag: r.tag,
      userdata: r.userdata,
      custom: r.custom,
      flags: r.flags,
      clientIp: r.clientIp,
      ts: r.ts,
    }
    if (taskCmd === 10 || taskCmd === 100 || r.cmd !== undefined) {
      if (r.cmd === undefined) throw new TypeError(`inject: a task cmd ${taskCmd} shorthand needs a body cmd`)
      task.body = encodeRequestBody(codec, { cmd: r.cmd, sn: 'sn' in r ? r.sn : nextSn++, data: r.data })
    }
    return task
  }

  return {
    inject(input: Task | InjectRequest): Promise<InjectResult> {
      let task: Task
      try {
        task = toTask(input)
      } catch (err) {
        return Promise.reject(err)
      }
      const id = nextId++
      return new Promise<InjectResult>((resolve, reject) => {
        pending.set(id, { task, egress: [], resolve })
        try {
          runtime.dispatch(id, task)
        } catch (err) {
          pending.delete(id)
          reject(err)
        }
      })
    },
    clock,
    advance: (ms: number) => clock.advanceAsync(ms),
    egress: all,
    logs: memory.entries,
    runtime,
    worker: runtime.worker,
    ready,
    storage,
    stats: () => runtime.stats(),
    stop: () => runtime.stop(),
  }
}

export { ManualClock } from '../clock.ts'
export { createMemoryLogger } from '../logger.ts'
export type { LogEntry, MemoryLogger } from '../logger.ts'
