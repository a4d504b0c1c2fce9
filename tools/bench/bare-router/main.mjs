/**
 * bare-router: the baseline of benchmark 2. A zeromq.js ROUTER receive-and-unpack loop, in one
 * thread: for every message, unpack the task, unpack its body, feed the order checker. Nothing else.
 *
 *   node bare-router/main.mjs --endpoint=tcp://127.0.0.1:PORT --tasks=N [--feedback-port=P]
 * Events: {bench:'ready'}; {bench:'result', reports} once N tasks went through.
 */
import * as zmq from 'zeromq'
import { Unpackr } from 'msgpackr'
import { createTracker } from '../lib/order.mjs'
import { parseArgs } from '../lib/run.mjs'

const o = parseArgs({ endpoint: '', tasks: 0, feedbackPort: 0 })
const emit = (e) => process.stdout.write(JSON.stringify(e) + '\n')
const unpackr = new Unpackr({ useRecords: false })
const tracker = createTracker({ feedbackPort: o.feedbackPort })

const router = new zmq.Router()
await router.bind(o.endpoint)
emit({ bench: 'ready', endpoint: o.endpoint })

let received = 0
function handle(task) {
  const body = unpackr.unpack(task.body)
  tracker.see(task.uid, body.sn)
}
for await (const [, frame] of router) {
  const v = unpackr.unpack(frame)
  if (Array.isArray(v)) {
    for (let k = 0; k < v.length; k++) handle(v[k])
    received += v.length
  } else {
    handle(v)
    received++
  }
  if (received >= o.tasks) break
}
tracker.flush()
emit({ bench: 'result', received, reports: [tracker.report()] })
router.close()
