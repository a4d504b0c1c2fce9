/**
 * bare-pipeline: the baseline of benchmark 1 (and of the latency benchmark). The least a
 * master/worker pipeline has to do, and nothing else:
 *   ROUTER receives msgpack frames (64-task arrays, or single tasks) from a DEALER
 *   → unpack → route by uid % 2 → repack 64 tasks per message (a partial batch leaves at the end
 *   of the event-loop turn) → ArrayBuffer transfer to 2 worker threads, which unpack each task and
 *   its body and feed the order checker (`worker.mjs`).
 * No validation, no lanes, no bounds, no supervision, no stats.
 *
 *   node bare-pipeline/master.mjs --endpoint=tcp://127.0.0.1:PORT --tasks=N [--feedback-port=P] [--latency]
 * Events: {bench:'ready'} once bound and both workers are up; {bench:'result', reports} once N
 * tasks went through and every worker reported.
 */
import { Worker } from 'node:worker_threads'
import * as zmq from 'zeromq'
import { Packr, Unpackr } from 'msgpackr'
import { parseArgs } from '../lib/run.mjs'

const o = parseArgs({ endpoint: '', tasks: 0, feedbackPort: 0, latency: false, latencyDir: '' })
const emit = (e) => process.stdout.write(JSON.stringify(e) + '\n')
const BATCH = 64
const WORKERS = 2

const workers = []
for (let i = 0; i < WORKERS; i++) {
  const w = new Worker(new URL('./worker.mjs', import.meta.url), {
    workerData: { index: i, feedbackPort: o.feedbackPort, latency: o.latency, latencyDir: o.latencyDir },
  })
  workers.push(w)
}
await Promise.all(
  workers.map(
    (w) =>
      new Promise((resolve, reject) => {
        w.once('message', resolve)
        w.once('error', reject)
      }),
  ),
)

const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ useRecords: false })
const outbox = workers.map(() => [])
let flushScheduled = false

function post(i) {
  const packed = packr.pack(outbox[i])
  outbox[i] = []
  const buf = new ArrayBuffer(packed.length)
  new Uint8Array(buf).set(packed)
  workers[i].postMessage(buf, [buf])
}

function flushAll() {
  flushScheduled = false
  for (let i = 0; i < WORKERS; i++) if (outbox[i].length > 0) post(i)
}

function route(task) {
  const i = task.uid % WORKERS
  const box = outbox[i]
  box.push(task)
  if (box.length === BATCH) post(i)
  else if (!flushScheduled) {
    flushScheduled = true
    setImmediate(flushAll)
  }
}

const router = new zmq.Router()
await router.bind(o.endpoint)
emit({ bench: 'ready', endpoint: o.endpoint })

let received = 0
for await (const [, frame] of router) {
  const v = unpackr.unpack(frame)
  if (Array.isArray(v)) {
    for (let k = 0; k < v.length; k++) route(v[k])
    received += v.length
  } else {
    route(v)
    received++
  }
  if (o.tasks > 0 && received >= o.tasks) break
}
flushAll()
const reports = await Promise.all(
  workers.map(
    (w) =>
      new Promise((resolve) => {
        w.once('message', resolve)
        w.postMessage({ t: 'end' })
      }),
  ),
)
emit({ bench: 'result', received, reports })
router.close()
// The workers close their ports after reporting and end on their own.
await Promise.all(workers.map((w) => new Promise((resolve) => w.once('exit', resolve))))
