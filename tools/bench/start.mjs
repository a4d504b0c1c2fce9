/**
 * Benchmark 4a: start. `node` on the built entry (apps/peony-server/dist/main.js, not through
 * pnpm, no tsx) until each of its 2 workers has handled a task, against bare-skeleton (a ROUTER
 * bind + 2 worker threads that import msgpackr and answer a ping). Interleaved, fresh processes.
 * Targets: Peony ≤ skeleton + 150 ms, and below the Python original's 493 ms (N=2, same machine kind).
 *
 *   pnpm -r build && node tools/bench/start.mjs [--runs=5]
 */
import { parseArgs, runInterleaved, summarizeRecords, writeResults, markdownTable, environment, fmtNum, pairDifferences, verdict } from './lib/run.mjs'
import { startRun, PEONY_MAIN } from './lib/lifecycle.mjs'
import { baseRatioLine, recordedOptions } from './lib/throughput.mjs'
import fs from 'node:fs'
import { median } from './lib/stats.mjs'

const o = parseArgs({ runs: 5, base: '' })
if (!fs.existsSync(PEONY_MAIN)) {
  console.error(`${PEONY_MAIN} is missing: build first (pnpm -r build).`)
  process.exit(1)
}
const env = environment()
env.peonyMainMtime = fs.statSync(PEONY_MAIN).mtime.toISOString()
const records = await runInterleaved({
  name: 'start',
  runs: o.runs,
  variants: [
    { name: 'bare-skeleton', run: (ctx) => startRun({ server: 'bare-skeleton', logDir: ctx.logDir, label: `skeleton-${ctx.run}` }) },
    { name: 'peony', run: (ctx) => startRun({ server: 'peony', logDir: ctx.logDir, label: `peony-${ctx.run}` }) },
    ...(o.base ? [{ name: 'peony-base', run: (ctx) => startRun({ server: 'peony', root: o.base, logDir: ctx.logDir, label: `peony-base-${ctx.run}` }) }] : []),
  ],
})
const summary = summarizeRecords(records, { numerator: 'peony', denominator: 'bare-skeleton' })
const diffs = pairDifferences(records, 'peony', 'bare-skeleton')
const cleanPeony = records.peony.filter((r) => r.ok && !r.disturbed).map((r) => r.value)
const holds = verdict(diffs.clean, (d) => d <= 150 && median(cleanPeony) < 493)
const target = {
  text: `peony ≤ skeleton + 150 ms and < 493 ms (undisturbed pairs: median difference ${fmtNum(diffs.clean.median, 0)} ms, peony median ${fmtNum(median(cleanPeony), 0)} ms)`,
  holds,
}
const table =
  markdownTable({ title: 'start: spawn → each of 2 workers handled a task', unit: 'ms', summary, target, digits: 0 }) +
  baseRatioLine(records, summarizeRecords, fmtNum)
const file = writeResults('start', {
  bench: 'start',
  options: recordedOptions(o),
  env,
  envAfter: { loadavg: environment().loadavg },
  summary,
  perRunDifferenceMs: diffs,
  target,
  table,
  records,
})
console.log(table)
console.error(`results: ${file}`)
