/**
 * The entry of every worker thread: loads the application module, hosts a WorkerRuntime, feeds
 * it the master's task batches, records each task's start and end in shared memory, reports
 * settled tasks back in batches, and hands its egress to the egress thread through a port (no
 * ZeroMQ here: see messages.ts).
 */
import { parentPort, workerData } from 'node:worker_threads'
import { pathToFileURL } from 'node:url'
import type { EgressMessage } from '@peony/broker-client'
import { decodeTasks } from '@peony/broker-client/codec'
import { WorkerRuntime, type PeonyApp } from '@peony/worker'
import { createThreadLogger } from './thread-logger.ts'
import { HEARTBEAT_MS, type FromWorker, type ToWorker, type WorkerBoot } from './messages.ts'

const boot = workerData as WorkerBoot
const port = parentPort!
const marks = new Int32Array(boot.sab)
const mask = boot.markMask
const post = (m: FromWorker): void => port.postMessage(m)

const heartbeat = setInterval(() => Atomics.add(marks, 0, 1), HEARTBEAT_MS)

const logger = createThreadLogger(boot.logLevel, { slot: boot.slot, group: boot.groupId, gen: boot.generation })

function fatal(err: unknown): never {
  const e = err instanceof Error ? err : new Error(String(err))
  post({ t: 'fatal', message: e.message, stack: e.stack })
  clearInterval(heartbeat)
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
  fatal(err)
}

/** Egress goes to the egress thread in one message per turn; never blocks a handler. */
let egressPort = boot.egressPort
let egressBatch: EgressMessage[] = []
let egressScheduled = false
let egressSent = 0
function flushEgress(): void {
  egressScheduled = false
  if (egressBatch.length === 0) return
  egressSent += egressBatch.length
  egressPort.postMessage(egressBatch)
  egressBatch = []
}
const egress = {
  send(msg: EgressMessage): void {
    egressBatch.push(msg)
    if (!egressScheduled) {
      egressScheduled = true
      setImmediate(flushEgress)
    }
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

const runtime = new WorkerRuntime({
  app,
  info: { slot: boot.slot, groupId: boot.groupId, index: boot.index, serverId: boot.serverId, generation: boot.generation },
  egress,
  logger,
  workTimeoutMs: boot.workTimeoutMs,
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

try {
  await runtime.start()
} catch (err) {
  fatal(err)
}

/** A dispatch batch: the tasks' original maps (validated by the master already) and their ids. */
function onTasks(buf: ArrayBuffer, ids: Int32Array): void {
  const { tasks } = decodeTasks(new Uint8Array(buf), { maxFrameBytes: Number.MAX_SAFE_INTEGER })
  if (tasks.length !== ids.length) {
    // Cannot happen (the same decoder accepted each map); if it does, say so loudly.
    logger.error({ tasks: tasks.length, ids: ids.length }, 'dispatch batch does not decode to its ids')
  }
  for (let i = 0; i < tasks.length; i++) runtime.dispatch(ids[i]!, tasks[i]!)
}

async function onStop(): Promise<void> {
  let stats: Record<string, unknown> = {}
  try {
    await runtime.stop()
    stats = { ...runtime.stats() }
  } catch (err) {
    logger.error({ err }, 'worker stop hooks failed')
  }
  clearInterval(statsTimer)
  flushDone()
  flushEgress()
  stats.egressSent = egressSent
  egressPort.close()
  clearInterval(heartbeat)
  post({ t: 'stats', stats })
  post({ t: 'stopped', stats })
  port.close()
}

port.on('message', (m: ToWorker) => {
  if (m.t === 'tasks') onTasks(m.buf, m.ids)
  else if (m.t === 'stop') void onStop()
  else if (m.t === 'egress') {
    egressPort.close()
    egressPort = m.port
  }
})

// The runtime's counters reach the master twice a second (and once more at stop).
const statsTimer = setInterval(() => post({ t: 'stats', stats: { ...runtime.stats() } }), 500)
statsTimer.unref()

post({ t: 'ready' })
