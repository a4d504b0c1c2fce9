/**
 * The Peony side of the throughput, latency and respawn benchmarks: a process that runs a master
 * (`createMaster` from @peony/master, default configuration except endpoints) with the bench app.
 *
 *   node --conditions=@peony/source --import tsx peony/host.mjs …   (from sources)
 *   node peony/host.mjs …                                            (from the built dist/)
 *   --endpoint=tcp://…  intake      --forwarder=tcp://…  egress (nothing listens there)
 *   --tasks=N           wait until N tasks went through, stop, print the result and exit;
 *                       0: run until stdin closes (respawn benchmark)
 *   --app=lifecycle     the start/respawn app instead of the order-checking one
 *   --report-dir=DIR    where the threads' report file goes (a temporary folder in it; default: the OS tmpdir)
 * Events: {bench:'ready', startMs}; {bench:'result', reports, stats}.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from '../lib/run.mjs'
import { nowMs } from '../lib/tasks.mjs'

const o = parseArgs({ endpoint: '', forwarder: '', tasks: 0, feedbackPort: 0, latency: false, latencyDir: '', app: 'check', reportDir: '' })
const emit = (e) => process.stdout.write(JSON.stringify(e) + '\n')
const here = path.dirname(fileURLToPath(import.meta.url))

const reportFile = path.join(fs.mkdtempSync(path.join(o.reportDir || os.tmpdir(), 'peony-bench-')), 'reports.jsonl')
// Worker threads inherit process.env as it is when they are created.
process.env.BENCH_REPORT_FILE = reportFile
process.env.BENCH_FEEDBACK_PORT = String(o.feedbackPort)
process.env.BENCH_LATENCY = o.latency ? '1' : '0'
process.env.BENCH_LATENCY_DIR = o.latencyDir

const { createMaster } = await import('@peony/master')
const t0 = nowMs()
const master = createMaster({
  serverId: 'bench',
  appModule: path.join(here, o.app === 'lifecycle' ? 'lifecycle-app.mjs' : 'app.mjs'),
  intakeEndpoints: [o.endpoint],
  forwarderEndpoint: o.forwarder,
  groups: [{ id: 1, count: 2 }],
})
await master.start()
emit({ bench: 'ready', startMs: nowMs() - t0 })

/** Largest number of tasks seen queued in the master per worker (sampled every 5 ms). */
const maxPending = []
if (o.tasks > 0) {
  let lastProgress = Date.now()
  let lastSeen = -1
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const s = master.stats()
      const rejected = Object.values(s.rejects).reduce((a, b) => a + b, 0)
      const seen = s.client_req + rejected
      if (seen !== lastSeen) {
        lastSeen = seen
        lastProgress = Date.now()
      }
      for (let i = 0; i < s.pending_tasks.workers.length; i++) maxPending[i] = Math.max(maxPending[i] ?? 0, s.pending_tasks.workers[i])
      const idle = s.in_flight.all === 0 && s.pending_tasks.all === 0
      // Done when every task arrived and settled; give up 10 s after the last progress.
      if ((seen >= o.tasks && idle) || (idle && Date.now() - lastProgress > 10_000)) {
        clearInterval(timer)
        resolve()
      }
    }, 5)
  })
} else {
  const rl = readline.createInterface({ input: process.stdin })
  await new Promise((resolve) => rl.on('close', resolve))
}

const statsBefore = master.stats()
await master.stop()
const reports = fs.existsSync(reportFile)
  ? fs
      .readFileSync(reportFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
  : []
fs.rmSync(path.dirname(reportFile), { recursive: true, force: true })
emit({ bench: 'result', reports, stats: statsBefore, maxPending })
process.exit(0)
