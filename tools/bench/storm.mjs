/**
 * Malformed-frame storm: Peony's good throughput (64-task frames, as batch-throughput) with a
 * storm of malformed frames arriving on the same intake from another process, against the same
 * run without it, interleaved, fresh processes per run. Target: stormy ≥ 0.8 × calm.
 *
 *   node tools/bench/storm.mjs [--runs=5] [--tasks=200000] [--window=8000] [--storm-rate=3000] [--only=calm|storm]
 *
 * The storm (packages/master/test/peer/storm.mjs): random bytes, truncated values, wrong types,
 * oversized and multipart messages, paced at --storm-rate frames/s, niced to 19: the attacker is
 * on another host in production, so only the server's cost of the storm is measured. Each stormy
 * run checks that the storm was real (rejections counted by the server, ≥ 1,000) and, like every
 * run, that every good task was handled once and in order.
 *
 * This was a timed test (packages/master/test/storm.test.ts, now storm.slow.test.ts) until issue 10 moved the ratio
 * here: speed is measured by benchmarks, the test keeps the behaviour (every good task answered,
 * every cause counted, the log bounded).
 */
import { spawn } from 'node:child_process'
import path from 'node:path'
import { REPO_DIR, parseArgs } from './lib/run.mjs'
import { recordedOptions, throughputRun } from './lib/throughput.mjs'

const o = parseArgs({ runs: 5, tasks: 200_000, window: 8_000, stormRate: 3000, only: '' })
const STORM = path.join(REPO_DIR, 'packages/master/test/peer/storm.mjs')
const TARGET = 0.8

const { environment, runInterleaved, summarizeRecords, writeResults, markdownTable, verdict } = await import('./lib/run.mjs')

/** Starts the storm against `endpoint`; stop() kills it and reports its pid's run time. */
function startStorm({ endpoint }) {
  const proc = spawn('nice', ['-n', '19', process.execPath, STORM, endpoint, String(o.stormRate), '17000'], { stdio: 'ignore' })
  const t0 = Date.now()
  let stopped
  return Promise.resolve({
    stop() {
      stopped ??= new Promise((resolve) => {
        const ms = Date.now() - t0
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve({ stormMs: ms })
        proc.once('exit', () => resolve({ stormMs: ms }))
        proc.kill('SIGKILL')
      })
      return stopped
    },
  })
}

const rejectsOf = (rec) => Object.values(rec.peonyStats?.rejects ?? {}).reduce((a, b) => a + b, 0)

const env = environment()
const common = { tasks: o.tasks, batch: 64, window: o.window }
const variants = [
  { name: 'calm', run: (ctx) => throughputRun({ ...common, receiver: 'peony', logDir: ctx.logDir, label: `calm-${ctx.run}` }) },
  {
    name: 'storm',
    run: async (ctx) => {
      const r = await throughputRun({ ...common, receiver: 'peony', logDir: ctx.logDir, label: `storm-${ctx.run}`, onReady: startStorm })
      const rejected = rejectsOf(r)
      r.rejected = rejected
      r.stormRate = r.elapsedMs > 0 ? Math.round(rejected / (r.elapsedMs / 1000)) : 0
      if (rejected < 1000) {
        r.ok = false
        r.error = `the storm was not real: ${rejected} rejections counted`
      }
      r.note = `${rejected} malformed frames rejected, ~${r.stormRate}/s`
      return r
    },
  },
].filter((v) => !o.only || v.name === o.only)

const records = await runInterleaved({ name: 'storm', runs: o.runs, variants })
const summary = summarizeRecords(records, records.calm && records.storm ? { numerator: 'storm', denominator: 'calm' } : undefined)
const holds = summary.cleanRatio ? verdict(summary.cleanRatio, (m) => m >= TARGET) : null
const target = { text: `storm ≥ ${TARGET} × calm (judged on the undisturbed pairs)`, holds }
const title = `64-task frames, ${o.tasks.toLocaleString('en-US')} tasks, window ${o.window}, storm ${o.stormRate} malformed frames/s`
const table = markdownTable({ title, unit: 'tasks/s', summary, target })
const file = writeResults('storm', {
  bench: 'storm',
  options: recordedOptions(o),
  env,
  envAfter: { loadavg: environment().loadavg },
  summary,
  target,
  table,
  records,
})
console.log(table)
console.error(`results: ${file}`)
