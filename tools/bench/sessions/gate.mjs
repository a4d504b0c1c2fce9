/**
 * Output-gate benchmark (docs/benchmarks.md, "Output gate"; issue 8 item 8): a gated route
 * (`gate: 'stored'`) against the same route ungated (`gate: 'none'`), LevelDB and Redis, 10,000
 * players with 1 KB sessions, all loaded before anything is measured; and, for the gate's
 * latency, a bare batched fenced write of the size the gate's group commits have at that load,
 * measured in the same run. Targets:
 *   - throughput at saturation: gated ≥ 0.5 × ungated (median of the per-run ratios);
 *   - at half of ungated saturation: the gate's added p99, p99(gated) − p99(ungated), ≤ 3 × the
 *     p99 of the bare batched fenced write of the same run (median of the per-run ratios).
 *
 *   node tools/bench/sessions/gate.mjs [--runs=5] [--only=level|redis] [--players=10000] [--seconds=10] [--window=1024] [--rate=R]
 *
 * Each case is a fresh process (gate-case.mjs: storage host thread, worker thread with a
 * WorkerRuntime, the main thread as master and client). Variants are interleaved per run, LevelDB
 * then Redis:
 *   1. saturation: <d>-ungated, <d>-gated; closed loop, the window full: `window` tasks
 *      dispatched to the worker and not reported done (default 1,024, the master's
 *      claimedMaxSize: what a master gives one worker at most; the same bound in phase 2).
 *   2. latency, at half of the median ungated saturation of phase 1 for that driver (`--rate=R`
 *      sets it instead): <d>-ungated, <d>-gated (open loop, paced), then <d>-bare-fenced-write:
 *      writeFenced calls as many per second as the gated run of the same run index made, each of
 *      the mean size of that run's calls (rounded), through the same RemoteStorage → host
 *      thread → driver path.
 * `--seconds` per case (the first second is warm-up, not counted), `--players` players.
 * Prints markdown tables and writes results/gate.json.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { SOURCE_FLAGS, environment, fmtNum, parseArgs, runInterleaved, spawnChild, summarizeRecords, writeResults } from '../lib/run.mjs'
import { max, median, min } from '../lib/stats.mjs'

// Not from common.mjs: this process runs without the source conditions common.mjs's imports need.
const HERE = path.dirname(fileURLToPath(import.meta.url))

const args = parseArgs({ runs: 5, only: '', players: 10_000, seconds: 10, window: 1024, rate: 0 })
const THROUGHPUT = 0.5
const LATENCY = 3
const drivers = args.only === '' ? ['level', 'redis'] : [args.only]
const title = { level: 'LevelDB (classic-level)', redis: 'Redis' }

function variant(name, phase, extra) {
  return {
    name,
    async run({ logDir, run }) {
      const argv = [`--case=${name}`, `--players=${args.players}`, `--seconds=${args.seconds}`, ...extra(run)]
      const child = spawnChild(path.join(HERE, 'gate-case.mjs'), argv, {
        nodeFlags: SOURCE_FLAGS,
        logFile: path.join(logDir, `${phase}-${name}-${run}.log`),
        cwd: HERE,
      })
      const ev = await child.wait((e) => e.bench === 'result', (args.seconds + 170) * 1000, `${name} result`)
      await child.exited
      return ev
    },
  }
}

// 1. Saturation.
const satVariants = drivers.flatMap((d) =>
  ['ungated', 'gated'].map((v) => variant(`${d}-${v}`, 'saturation', () => ['--mode=saturation', `--window=${args.window}`])),
)
const sat = await runInterleaved({ name: 'gate', runs: args.runs, variants: satVariants, timeoutMs: (args.seconds + 180) * 1000 })

// 2. Latency at half of ungated saturation; the bare write takes the batch of the gated run before it.
const rates = {}
for (const d of drivers) {
  const ok = sat[`${d}-ungated`].filter((r) => r.ok).map((r) => r.value)
  rates[d] = args.rate > 0 ? args.rate : Math.round(median(ok) / 2)
}
/** Per driver and run: the gated latency run's writeFenced calls (mean sessions per call, calls per second). */
const gatedWrites = Object.fromEntries(drivers.map((d) => [d, []]))
const latVariants = []
for (const d of drivers) {
  if (!(rates[d] > 0)) {
    process.stderr.write(`[gate] ${d}: no ungated saturation run passed, no latency runs\n`)
    continue
  }
  const paced = () => ['--mode=latency', `--rate=${rates[d]}`, `--window=${args.window}`]
  latVariants.push(variant(`${d}-ungated`, 'latency', paced))
  const gated = variant(`${d}-gated`, 'latency', paced)
  latVariants.push({
    name: gated.name,
    async run(ctx) {
      const ev = await gated.run(ctx)
      if (ev.writes?.calls > 0) gatedWrites[d][ctx.run] = { batch: Math.max(1, Math.round(ev.writes.meanSessions)), callsPerS: ev.writes.callsPerS }
      return ev
    },
  })
  const bare = variant(`${d}-bare-fenced-write`, 'latency', (run) => {
    const g = gatedWrites[d][run]
    if (g === undefined) throw new Error(`no batch size: the gated run ${run + 1} made no writeFenced call`)
    return [`--batch=${g.batch}`, `--period-ms=${1000 / g.callsPerS}`]
  })
  latVariants.push(bare)
}
const lat = latVariants.length > 0 ? await runInterleaved({ name: 'gate', runs: args.runs, variants: latVariants, timeoutMs: (args.seconds + 180) * 1000 }) : {}

const stat = (xs) => ({ median: median(xs), min: min(xs), max: max(xs), perRun: xs })
const cell = (s, d) => `**${fmtNum(s.median, d)}** [${fmtNum(s.min, d)}–${fmtNum(s.max, d)}]`
const passed = (recs) => `${recs.filter((r) => r.ok).length}/${recs.length} (${recs.filter((r) => r.disturbed).length})`
const judge = (clean, test) => (clean.length >= 3 ? test(median(clean)) : null)
const verdict = (h) => (h === null ? '**inconclusive** (fewer than 3 undisturbed runs)' : h ? '**holds**' : '**does not hold**')

const out = {
  env: environment(),
  args,
  targets: {
    throughput: `gated ≥ ${THROUGHPUT} × ungated at saturation`,
    latency: `p99(gated) − p99(ungated) ≤ ${LATENCY} × p99(bare-fenced-write) at half of ungated saturation`,
  },
  rates,
  saturation: { records: sat, drivers: {} },
  latency: { records: lat, drivers: {} },
}
const md = []
for (const d of drivers) {
  // Saturation: gated / ungated per run.
  const u = sat[`${d}-ungated`]
  const g = sat[`${d}-gated`]
  const summary = summarizeRecords({ [`${d}-ungated`]: u, [`${d}-gated`]: g }, { numerator: `${d}-gated`, denominator: `${d}-ungated` })
  const r = summary.ratio.perRun
  const clean = summary.cleanRatio.perRun
  const holds = judge(clean, (x) => x >= THROUGHPUT)
  const batch = stat(g.filter((x) => x.ok).map((x) => x.writes.meanSessions))
  out.saturation.drivers[d] = { summary, holds, gatedSessionsPerCall: batch }
  md.push(
    `| output gate at saturation, ${title[d]}: ${args.players.toLocaleString('en-US')} players, 1 KB state, window ${args.window.toLocaleString('en-US')} (requests/s) | median | [min–max] | runs passed (disturbed) |`,
    '|---|---|---|---|',
  )
  for (const [name, recs] of [
    [`${d}-ungated`, u],
    [`${d}-gated`, g],
  ]) {
    const s = summary.variants[name]
    md.push(`| ${name} | **${fmtNum(s.median, 0)}** | [${fmtNum(s.min, 0)}–${fmtNum(s.max, 0)}] | ${passed(recs)} |`)
  }
  md.push(
    `| ratio gated / ungated (median of per-run ratios) | **${fmtNum(median(r), 2)}** | [${fmtNum(min(r), 2)}–${fmtNum(max(r), 2)}] | ${r.length} pairs |`,
  )
  md.push(`| same, undisturbed pairs only | **${fmtNum(median(clean), 2)}** | [${fmtNum(min(clean), 2)}–${fmtNum(max(clean), 2)}] | ${clean.length} pairs |`)
  md.push(`| gated: sessions per writeFenced call (mean of each run) | ${fmtNum(batch.median, 0)} | [${fmtNum(batch.min, 0)}–${fmtNum(batch.max, 0)}] | |`)
  md.push(`| target: gated ≥ ${THROUGHPUT} × ungated (judged on the undisturbed pairs) | ${verdict(holds)} | | |`, '')

  // Latency at half of ungated saturation.
  if (lat[`${d}-gated`] === undefined) continue
  const lu = lat[`${d}-ungated`]
  const lg = lat[`${d}-gated`]
  const lb = lat[`${d}-bare-fenced-write`]
  const pct = (recs, f) => stat(recs.filter((x) => x.ok).map(f))
  const rows = []
  for (let i = 0; i < args.runs; i++) {
    const [a, b, c] = [lu[i], lg[i], lb[i]]
    if (!a?.ok || !b?.ok || !c?.ok) continue
    const added = b.p99 - a.p99
    rows.push({
      run: i,
      added,
      bareP99: c.p99,
      ratio: added / c.p99,
      batch: c.batch,
      callsPerS: c.callsPerS,
      disturbed: a.disturbed || b.disturbed || c.disturbed,
    })
  }
  const ratio = rows.map((x) => x.ratio)
  const cleanL = rows.filter((x) => !x.disturbed).map((x) => x.ratio)
  // A gated run that could not keep up with the rate (requests found the master's queue full) has
  // no p99 to compare: when most undisturbed gated runs were overloaded, the target does not hold.
  const overloaded = lg.filter((x) => x.refused > 0).length
  const cleanGated = lg.filter((x) => !x.disturbed)
  const overloadedMostly = cleanGated.length >= 3 && cleanGated.filter((x) => x.refused > 0).length > cleanGated.length / 2
  const holdsL = overloadedMostly ? false : judge(cleanL, (x) => x <= LATENCY)
  const gateCalls = pct(lg, (x) => x.writes.ms.p99)
  out.latency.drivers[d] = { rate: rates[d], perRun: rows, ratio: stat(ratio), undisturbed: stat(cleanL), overloaded, holds: holdsL, gateCallsP99: gateCalls }
  const satMedian = summary.variants[`${d}-ungated`].median
  const rateText =
    args.rate > 0
      ? `${rates[d].toLocaleString('en-US')} requests/s (--rate)`
      : `${rates[d].toLocaleString('en-US')} requests/s, half of ungated saturation (${fmtNum(satMedian, 0)})`
  md.push(
    `| latency dispatch → reply at ${rateText}, ${title[d]} (ms; median [min–max] of the runs' percentiles) | p50 | p90 | p99 | p99.9 | runs passed (disturbed) |`,
    '|---|---|---|---|---|---|',
  )
  const line = (name, recs) =>
    md.push(
      `| ${name} | ${cell(pct(recs, (x) => x.p50))} | ${cell(pct(recs, (x) => x.p90))} | ${cell(pct(recs, (x) => x.p99))} | ${cell(pct(recs, (x) => x.p999))} | ${passed(recs)} |`,
    )
  line(`${d}-ungated`, lu)
  line(`${d}-gated`, lg)
  line(
    `${d}-bare-fenced-write: call → acknowledgement, ${lb.map((x) => x.batch ?? '–').join('/')} sessions per call, ${lb.map((x) => fmtNum(x.callsPerS, 0)).join('/')} calls/s`,
    lb,
  )
  md.push(
    `| ${d}-gated: its own writeFenced calls (group commits and write-behind), call → acknowledgement | ${cell(pct(lg, (x) => x.writes.ms.p50))} | ${cell(pct(lg, (x) => x.writes.ms.p90))} | ${cell(gateCalls)} | ${cell(pct(lg, (x) => x.writes.ms.p999))} | sessions per call ${cell(
      pct(lg, (x) => x.writes.meanSessions),
      0,
    )} |`,
    '',
  )
  md.push(`| the gate's added p99, ${title[d]} (per run) | median | [min–max] | runs |`, '|---|---|---|---|')
  md.push(`| p99(gated) − p99(ungated) (ms) | ${cell(stat(rows.map((x) => x.added)))} | | ${rows.length} |`)
  md.push(`| ${LATENCY} × p99(bare-fenced-write) (ms) | ${cell(stat(rows.map((x) => LATENCY * x.bareP99)))} | | ${rows.length} |`)
  md.push(
    `| ratio added p99 / p99(bare-fenced-write) (median of per-run ratios) | **${fmtNum(median(ratio), 2)}** | [${fmtNum(min(ratio), 2)}–${fmtNum(max(ratio), 2)}] | ${ratio.length} |`,
  )
  md.push(`| same, undisturbed runs only | **${fmtNum(median(cleanL), 2)}** | [${fmtNum(min(cleanL), 2)}–${fmtNum(max(cleanL), 2)}] | ${cleanL.length} |`)
  if (overloaded > 0)
    md.push(`| gated runs overloaded: requests found the queue full (10,000 waiting; a master would refuse them -10002) | ${overloaded} of ${args.runs} | | |`)
  md.push(
    `| target: added p99 ≤ ${LATENCY} × p99(bare-fenced-write) (ratio ≤ ${LATENCY}, judged on the undisturbed runs) | ${overloadedMostly ? '**does not hold** (most undisturbed gated runs did not keep up with the rate)' : verdict(holdsL)} | | |`,
    '',
  )
}
md.push(
  '"disturbed": other processes used ≥ 0.2 cores during the run (kept in the numbers, not retried); a latency run counts as disturbed when any of its three cases was.',
)
const file = writeResults('gate', out)
process.stdout.write(md.join('\n') + '\n')
process.stderr.write(`results: ${file}\n`)
