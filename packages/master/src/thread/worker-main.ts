/**
 * The entry of every worker thread. A thread boots unassigned: it loads the application module
 * and reports `loaded`. The master then assigns it to a slot (`assign`: slot identity, the shared
 * marks, the port to the egress thread), or keeps it as the spare that replaces the next worker
 * to die. Once assigned it hosts a WorkerRuntime, feeds it the master's task batches, records
 * each task's start and end in shared memory, reports settled tasks back in batches, and hands
 * its egress to the egress thread through its port (no ZeroMQ here: see messages.ts).
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import { pathToFileURL } from 'node:url'
import { decodeTasks, type EgressMessage } from '@peony/protocol'
import type { PeonyApp } from '@peony/worker'
import { WorkerRuntime } from '@peony/worker/host'
import { RemoteStorage } from '@peony/storage/remote'
import { createThreadLogger } from './thread-logger.ts'
import { HEARTBEAT_MS, type Assignment, type EgressPost, type FromWorker, type ThreadBoot, type ToWorker } from './messages.ts'
import { JournalWriter } from './egress-journal.ts'

const boot = workerData as ThreadBoot
const port = parentPort!
const post = (m: FromWorker): void => port.postMessage(m)
let logger = createThreadLogger(boot.logLevel, {})

function fatal(err: unknown): never {
  const e = err instanceof Error ? err : new Error(String(err))
  post({ t: 'fatal', message: e.message, stack: e.stack })
  // Give the message a chance to leave, then end the thread with a failure.
  setTimeout(() => process.exit(1), 10)
  throw e
}

let app: PeonyApp
try {
  const spec = boot.appModule.startsWith('file:') ? boot.appModule : pathToFileURL(boot.appModule).href
  const mod = (await import(spec)) as { default?: PeonyApp; app?: PeonyApp }
  const found = mod.default ?? mod.app
  if (found === undefined) throw new TypeError(`app module ${boot.appModule} has no default export (or export named "app")`)
  app = found
} catch (err) {
  fatal(explainLoadError(err, boot.appModule))
}

/**
 * A TypeScript app in a package without "type": "module" (what `npm init` makes) is loaded by
 * Node as CommonJS, which fails on its import/export with an error that does not say so
 * (ERR_REQUIRE_CYCLE_MODULE on Node 20.19+): say what to do, keeping the original as the cause.
 */
function explainLoadError(err: unknown, appModule: string): unknown {
  if (!/\.(ts|cts)$/.test(appModule)) return err
  const code = (err as { code?: unknown } | null)?.code
  const asCommonJs =
    code === 'ERR_REQUIRE_CYCLE_MODULE' ||
    code === 'ERR_REQUIRE_ESM' ||
    (err instanceof SyntaxError && /import statement outside a module|Unexpected token 'export'/.test(err.message))
  if (!asCommonJs) return err
  const e = new Error(
    `${appModule} is TypeScript in a package whose package.json has no "type": "module", so Node loads it as CommonJS, ` +
      `which cannot use import/export (${(err as Error).message}): add "type": "module" to that package.json, or name the file .mts`,
    { cause: err },
  )
  return e
}

/** Everything that exists once the thread is assigned to a slot. */
interface Assigned {
  runtime: WorkerRuntime
  marks: Int32Array
  mask: number
  heartbeat: NodeJS.Timeout
  statsTimer: NodeJS.Timeout
  storage: RemoteStorage | undefined
}
let assigned: Assigned | undefined

// Egress goes to the egress thread in one message per turn; never blocks a handler. Each message
// is encoded once, into the shared journal (egress-journal.ts), which the egress thread reads if
// this thread dies before posting; posting sends the journal's bytes as one transferred frame
// (cheaper than structured-cloning every message). A message the journal cannot take (one that
// does not encode, or is larger than the whole journal) goes out on its own, as an object, right
// after what was journaled before it, so the order holds.
// Both are set by assign(), before the runtime that sends egress exists.
let egressPort: MessagePort | undefined
let journal: JournalWriter | undefined
let egressScheduled = false
let egressSent = 0
function flushEgress(): void {
  egressScheduled = false
  const j = journal
  if (egressPort === undefined || j === undefined || j.empty) return
  const seq = j.seq
  const frame = j.frame()
  egressSent += j.count
  egressPort.postMessage({ seq, frame } satisfies EgressPost, [frame])
  j.posted(seq)
}
const egress = {
  send(msg: EgressMessage, taskId?: number, reply?: boolean): void {
    const j = journal!
    let r = j.append(msg)
    if (r === 'full') {
      flushEgress()
      r = j.append(msg)
    }
    if (r !== 'ok') {
      // Posted now, behind what the journal held: it survives this thread's death as posted.
      flushEgress()
      egressSent++
      egressPort!.postMessage({ seq: 0, batch: [msg] } satisfies EgressPost)
    }
    if (!egressScheduled) {
      egressScheduled = true
      setImmediate(flushEgress)
    }
    // The request has its answer, safe from here on: if this thread dies before the task
    // settles, the master must not answer it again (-10001).
    if (reply === true && taskId !== undefined && assigned !== undefined) Atomics.store(assigned.marks, 1 + (taskId & assigned.mask), -taskId)
  },
}

// Settled ids go back to the master once per turn.
let done: number[] = []
let flushScheduled = false
function flushDone(): void {
  flushScheduled = false
  if (done.length === 0) return
  const ids = Int32Array.from(done)
  done = []
  post({ t: 'done', ids })
}

function assign(a: Assignment): void {
  logger = createThreadLogger(boot.logLevel, { slot: a.slot, group: a.groupId, gen: a.generation })
  egressPort = a.egressPort
  journal = new JournalWriter(a.journal)
  const marks = new Int32Array(a.sab)
  const mask = a.markMask
  // Sessions reach the storage thread through this worker's own port.
  const storage = a.storagePort !== undefined && app.sessionDefinition !== undefined ? new RemoteStorage(a.storagePort) : undefined
  if (storage === undefined) a.storagePort?.close()
  const runtime = new WorkerRuntime({
    sessions: storage === undefined ? undefined : { ...a.sessions, storage },
    app,
    info: { slot: a.slot, groupId: a.groupId, index: a.index, serverId: a.serverId, generation: a.generation },
    egress,
    logger,
    workTimeoutMs: a.workTimeoutMs,
    onTaskStart(id: number) {
      Atomics.store(marks, 1 + (id & mask), id)
    },
    onTaskDone(id: number) {
      Atomics.store(marks, 1 + (id & mask), -id)
      done.push(id)
      if (!flushScheduled) {
        flushScheduled = true
        setImmediate(flushDone)
      }
    },
  })
  const heartbeat = setInterval(() => Atomics.add(marks, 0, 1), HEARTBEAT_MS)
  // The runtime's counters reach the master twice a second (and once more at stop).
  const statsTimer = setInterval(() => post({ t: 'stats', stats: { ...runtime.stats() } }), 500)
  statsTimer.unref()
  assigned = { runtime, marks, mask, heartbeat, statsTimer, storage }
  // Tasks may be dispatched from now on; they wait for the onWorkerStart hooks.
  runtime.start().then(
    () => post({ t: 'ready' }),
    (err: unknown) => fatal(err),
  )
}

/** A dispatch batch: the tasks' original maps (validated by the master already) and their ids. */
function onTasks(buf: ArrayBuffer, ids: Int32Array): void {
  const runtime = assigned!.runtime
  if (stopping) {
    // The master sends nothing after 'stop'; if it ever did, these tasks stay unstarted (their
    // marks say so) and the master answers them when this thread exits, instead of a throw
    // killing the thread in the middle of its graceful stop.
    logger.error({ tasks: ids.length }, 'tasks dispatched after stop: left unstarted')
    return
  }
  const { tasks } = decodeTasks(new Uint8Array(buf), { maxFrameBytes: Number.MAX_SAFE_INTEGER })
  if (tasks.length !== ids.length) {
    // Cannot happen (the same decoder accepted each map); if it does, say so loudly.
    logger.error({ tasks: tasks.length, ids: ids.length }, 'dispatch batch does not decode to its ids')
  }
  for (let i = 0; i < tasks.length; i++) runtime.dispatch(ids[i]!, tasks[i]!)
}

let stopping = false
async function onStop(): Promise<void> {
  stopping = true
  let stats: Record<string, unknown> = {}
  if (assigned !== undefined) {
    try {
      await assigned.runtime.stop()
      stats = { ...assigned.runtime.stats() }
    } catch (err) {
      logger.error({ err }, 'worker stop hooks failed')
    }
    await assigned.storage?.close().catch((err: unknown) => logger.error({ err }, 'closing the storage port failed'))
    clearInterval(assigned.statsTimer)
    clearInterval(assigned.heartbeat)
  }
  flushDone()
  flushEgress()
  stats.egressSent = egressSent
  egressPort?.close()
  post({ t: 'stats', stats })
  post({ t: 'stopped', stats })
  port.close()
}

port.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'tasks':
      onTasks(m.buf, m.ids)
      break
    case 'assign':
      assign(m.assignment)
      break
    case 'stop':
      void onStop()
      break
    case 'egress':
      egressPort?.close()
      egressPort = m.port
      break
  }
})

post({ t: 'loaded' })
