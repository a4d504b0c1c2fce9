/**
 * Benchmark 3: latency from intake to handler at half of saturation.
 *
 * 1. Saturation: Peony's throughput measured now, in this invocation (--sat-runs runs of
 *    benchmark 2's setup, or benchmark 1's with --batch=64); skipped when --rate is given.
 * 2. Runs paced at half of it (--rate), interleaved: bare-pipeline (baseline), Peony. Each task
 *    carries its send time (float64 ms in its body data, stamped just before its frame is sent;
 *    `ts` gets the integer ms); the handler records handler time − send time. The first
 *    --warmup-ms of each run are left out.
 * Target: Peony p99 < 2 ms.
 *
 *   node tools/bench/latency.mjs [--runs=5] [--batch=1] [--seconds=6] [--warmup-ms=1000] [--rate=0] [--sat-runs=3] [--out=latency]
 *
 * --out names the results file (results/<out>.json), so a run at a fixed --rate keeps the
 * half-saturation figures in results/latency.json.
 */
import { parseArgs, runInterleaved, summarize, summarizeRecords, verdict, writeResults, environment, fmtNum, markdownTable } from './lib/run.mjs'
import { baseRatioLine, baseReceiver, recordedOptions, throughputRun } from './lib/throughput.mjs'
import { median } from './lib/stats.mjs'

const o = parseArgs({
  runs: 5,
  batch: 1,
  seconds: 6,
  warmupMs: 1000,
  rate: 0,
  satRuns: 3,
  window: 8_000,
  peony: 'source',
  satTasks: 200_000,
  out: 'latency',
  base: '',
})
const env = environment()
const peonyReceiver = o.peony === 'dist' ? 'peony-dist' : 'peony'

let rate = o.rate
let saturation
if (rate === 0) {
  const sat = await runInterleaved({
    name: 'latency-saturation',
    runs: o.satRuns,
    variants: [
      {
        name: 'peony',
        run: (ctx) =>
          throughputRun({ receiver: peonyReceiver, tasks: o.satTasks, batch: o.batch, window: o.window, logDir: ctx.logDir, label: `sat-${ctx.run}` }),
      },
    ],
  })
  saturation = { ...summarize(sat.peony.map((r) => r.value)), records: sat.peony }
  if (!Number.isFinite(saturation.median)) throw new Error('saturation could not be measured: every saturation run failed')
  rate = Math.round(saturation.median / 2)
}
const tasks = Math.ceil((rate * o.seconds) / o.batch) * o.batch
process.stderr.write(`[latency] pacing at ${rate} tasks/s, ${tasks} tasks per run, frames of ${o.batch}\n`)

const common = { tasks, batch: o.batch, rate, latency: true, warmupMs: o.warmupMs }
const asP99 = (res) => ({ ...res, throughput: res.value, value: res.latency?.p99 ?? NaN })
const records = await runInterleaved({
  name: 'latency',
  runs: o.runs,
  variants: [
    {
      name: 'bare-pipeline',
      run: async (ctx) => asP99(await throughputRun({ ...common, receiver: 'bare-pipeline', logDir: ctx.logDir, label: `bare-${ctx.run}` })),
    },
    { name: 'peony', run: async (ctx) => asP99(await throughputRun({ ...common, receiver: peonyReceiver, logDir: ctx.logDir, label: `peony-${ctx.run}` })) },
    ...(o.base
      ? [
          {
            name: 'peony-base',
            run: async (ctx) => asP99(await throughputRun({ ...common, receiver: baseReceiver(o.base), logDir: ctx.logDir, label: `peony-base-${ctx.run}` })),
          },
        ]
      : []),
  ],
})

const pick = (name, k) => records[name].map((r) => (r.ok ? r.latency[k] : null))
const summary = summarizeRecords(records, { numerator: 'peony', denominator: 'bare-pipeline' })
const cleanPeony = records.peony.filter((r) => r.ok && !r.disturbed).map((r) => r.value)
const holds = verdict({ perRun: cleanPeony, median: median(cleanPeony) }, (m) => m < 2)
const target = { text: `peony p99 < 2 ms (judged on the median of the undisturbed runs: ${fmtNum(median(cleanPeony), 3)} ms over ${cleanPeony.length})`, holds }
const detail = ['| p50 / p99 / p99.9 / max (ms), medians over runs | bare-pipeline | peony |', '|---|---|---|']
for (const k of ['p50', 'p90', 'p99', 'p999', 'max']) {
  const m = (name) => median(pick(name, k).filter((x) => x !== null))
  detail.push(`| ${k} | ${fmtNum(m('bare-pipeline'), 3)} | ${fmtNum(m('peony'), 3)} |`)
}
const title = `p99 latency intake → handler, ${o.batch === 1 ? '1 task per message' : `${o.batch}-task frames`}, paced at ${rate.toLocaleString('en-US')} tasks/s (half of Peony's saturation ${saturation ? fmtNum(saturation.median) : '(given)'})`
const table = markdownTable({ title, unit: 'ms', summary, target, digits: 3 }) + '\n\n' + detail.join('\n') + baseRatioLine(records, summarizeRecords, fmtNum)
const file = writeResults(String(o.out), {
  bench: 'latency',
  options: recordedOptions(o),
  env,
  envAfter: { loadavg: environment().loadavg },
  rate,
  saturation,
  summary,
  target,
  table,
  records,
})
console.log(table)
console.error(`results: ${file}`)
