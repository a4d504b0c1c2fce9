/**
 * A worker thread of bare-skeleton: answers 'ping' with 'pong'; unpacks every frame it gets and
 * prints {bench:'handled', thread, at} (synchronously on fd 1) for the first one.
 */
import fs from 'node:fs'
import { parentPort, threadId } from 'node:worker_threads'
import { Unpackr } from 'msgpackr'

const unpackr = new Unpackr({ useRecords: false })
let first = true
parentPort.on('message', (m) => {
  if (m === 'ping') {
    parentPort.postMessage('pong')
    return
  }
  const v = unpackr.unpack(m)
  if (first && v !== undefined) {
    first = false
    fs.writeSync(1, JSON.stringify({ bench: 'handled', thread: `${process.pid}/${threadId}`, at: performance.timeOrigin + performance.now() }) + '\n')
  }
})
