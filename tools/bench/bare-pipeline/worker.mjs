/**
 * A worker thread of bare-pipeline: unpacks each transferred batch, then each task's body, and
 * feeds the order checker. `{t: 'end'}` (posted after the last batch) makes it answer its report.
 */
import { parentPort, workerData } from 'node:worker_threads'
import fs from 'node:fs'
import path from 'node:path'
import { Unpackr } from 'msgpackr'
import { createTracker } from '../lib/order.mjs'

const unpackr = new Unpackr({ useRecords: false })
const tracker = createTracker({ feedbackPort: workerData.feedbackPort, latency: workerData.latency })
const latency = workerData.latency

parentPort.on('message', (m) => {
  if (m instanceof ArrayBuffer) {
    const tasks = unpackr.unpack(new Uint8Array(m))
    for (let k = 0; k < tasks.length; k++) {
      const task = tasks[k]
      const body = unpackr.unpack(task.body)
      const at = tracker.see(task.uid, body.sn)
      if (latency) tracker.latency(body.data, at)
    }
    return
  }
  if (m.t === 'end') {
    tracker.flush()
    const latencyFile = latency ? path.join(workerData.latencyDir, `lat-${tracker.id.replace('/', '-')}.bin`) : undefined
    parentPort.postMessage(tracker.report({ worker: workerData.index, latencyFile, writeFile: fs.writeFileSync }))
    parentPort.close()
  }
})
parentPort.postMessage('ready')
