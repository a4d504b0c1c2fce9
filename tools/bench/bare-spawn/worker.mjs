/**
 * A worker thread of bare-spawn: imports msgpackr, says it is up; on 'exit', reports the time
 * and exits with code 1.
 */
import { parentPort } from 'node:worker_threads'
import { Unpackr } from 'msgpackr'

const unpackr = new Unpackr({ useRecords: false })
parentPort.on('message', (m) => {
  if (m === 'exit') {
    parentPort.postMessage({ exitAt: performance.timeOrigin + performance.now() })
    process.exit(1)
  }
})
parentPort.postMessage({ up: true, probe: unpackr.unpack(Uint8Array.of(0x01)) })
