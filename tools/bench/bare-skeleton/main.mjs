/**
 * bare-skeleton: the baseline of the start benchmark. The least a server of this shape does
 * before it handles tasks: bind a ROUTER and start 2 worker threads that import msgpackr and
 * answer a ping (both at once). Every received frame is copied to both workers; each unpacks it
 * and prints {bench:'handled', thread, at} for the first task it handles (`worker.mjs`).
 *
 *   node bare-skeleton/main.mjs --endpoint=tcp://127.0.0.1:PORT
 */
import { Worker } from 'node:worker_threads'
import * as zmq from 'zeromq'
import { parseArgs } from '../lib/run.mjs'

const o = parseArgs({ endpoint: '' })
const router = new zmq.Router()
const workers = [0, 1].map((index) => new Worker(new URL('./worker.mjs', import.meta.url), { workerData: { index } }))
const pong = (w) =>
  new Promise((resolve, reject) => {
    w.once('message', resolve)
    w.once('error', reject)
    w.postMessage('ping')
  })
await Promise.all([router.bind(o.endpoint), ...workers.map(pong)])
process.stdout.write(JSON.stringify({ bench: 'ready' }) + '\n')
for await (const [, frame] of router) {
  for (const w of workers) {
    const copy = new Uint8Array(frame)
    w.postMessage(copy, [copy.buffer])
  }
}
