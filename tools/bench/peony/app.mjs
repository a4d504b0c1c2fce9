/**
 * The bench app for the throughput and latency benchmarks. Its one route feeds this worker
 * thread's order checker (and, in latency runs, records send stamp → handler time); at
 * `onWorkerStop` it appends the thread's report as one JSON line to $BENCH_REPORT_FILE.
 */
import fs from 'node:fs'
import path from 'node:path'
import { createApp } from '@peony/worker'
import { createTracker } from '../lib/order.mjs'

const latency = process.env.BENCH_LATENCY === '1'
const tracker = createTracker({ feedbackPort: Number(process.env.BENCH_FEEDBACK_PORT ?? 0), latency })

const app = createApp()

app.route('battle.attack', (req) => {
  const at = tracker.see(req.uid, req.sn)
  if (latency) tracker.latency(req.data, at)
})

app.addHook('onWorkerStop', (worker) => {
  tracker.flush()
  const latencyFile = latency ? path.join(process.env.BENCH_LATENCY_DIR, `lat-${tracker.id.replace('/', '-')}.bin`) : undefined
  const report = tracker.report({ worker: worker?.slot, generation: worker?.generation, latencyFile, writeFile: fs.writeFileSync })
  fs.appendFileSync(process.env.BENCH_REPORT_FILE, JSON.stringify(report) + '\n')
})

export default app
