/**
 * Benchmark 4b: respawn. A handler calls process.exit(1) in its worker thread; time from that
 * exit to the first task handled by the new worker (Peony from the built dist/, default
 * configuration), against a bare thread spawn (new Worker → first message, in a process that
 * already runs 2 threads). Interleaved, fresh processes. Target: Peony ≤ bare spawn + 50 ms.
 *
 * The value is the first death of a run; with --kills=2 (default) the replacement is killed again
 * at once and that second respawn is reported too (Peony keeps one loaded spare thread, so the
 * first respawn uses it and the second may not find one).
 *
 *   pnpm -r build && node tools/bench/respawn.mjs [--runs=5] [--peony=dist|source] [--kills=2]
 */
import { parseArgs, runInterleaved, summarizeRecords, writeResults, markdownTable, environment, fmtNum, pairDifferences, verdict } from './lib/run.mjs'
import { peonyRespawnRun, bareSpawnRun } from './lib/lifecycle.mjs'
import { baseRatioLine, recordedOptions } from './lib/throughput.mjs'
import { median } from './lib/stats.mjs'

const o = parseArgs({ runs: 5, peony: 'dist', kills: 2, base: '' })
const env = environment()
const records = await runInterleaved({
  name: 'respawn',
  runs: o.runs,
  variants: [
    { name: 'bare-spawn', run: (ctx) => bareSpawnRun({ logDir: ctx.logDir, label: `spawn-${ctx.run}` }) },
    { name: 'peony', run: (ctx) => peonyRespawnRun({ logDir: ctx.logDir, label: `peony-${ctx.run}`, fromSource: o.peony === 'source', kills: o.kills }) },
    ...(o.base
      ? [
          {
            name: 'peony-base',
            run: (ctx) =>
              peonyRespawnRun({ root: o.base, logDir: ctx.logDir, label: `peony-base-${ctx.run}`, fromSource: o.peony === 'source', kills: o.kills }),
          },
        ]
      : []),
  ],
})
const summary = summarizeRecords(records, { numerator: 'peony', denominator: 'bare-spawn' })
const diffs = pairDifferences(records, 'peony', 'bare-spawn')
const holds = verdict(diffs.clean, (d) => d <= 50)
const target = { text: `peony ≤ bare spawn + 50 ms (undisturbed pairs: median difference ${fmtNum(diffs.clean.median, 0)} ms)`, holds }
const secondKills = records.peony.filter((r) => r.ok && Number.isFinite(r.secondKillMs)).map((r) => r.secondKillMs)
const secondKill = median(secondKills)
const exitToFirst = median(records['bare-spawn'].filter((r) => r.ok).map((r) => r.exitToFirstMs))
const table =
  markdownTable({
    title: 'respawn: worker exit → first task handled by the new worker',
    unit: 'ms',
    summary,
    target,
    digits: 0,
    notes: [
      `bare-spawn measures new Worker → first message; its exit → first message (the span Peony is timed on) had a median of ${fmtNum(exitToFirst, 0)} ms.`,
      ...(o.kills > 1
        ? [
            `Peony's new worker killed again as soon as it handled a task (second death in a row): median ${fmtNum(secondKill, 0)} ms [${fmtNum(Math.min(...secondKills), 0)}–${fmtNum(Math.max(...secondKills), 0)}] (${secondKills.length} runs).`,
          ]
        : []),
    ],
  }) + baseRatioLine(records, summarizeRecords, fmtNum)
const file = writeResults('respawn', {
  bench: 'respawn',
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
