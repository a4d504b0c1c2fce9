/**
 * First-request load latency benchmark (docs/benchmarks.md, "Sessions"; issue 3): how long the
 * first request of a player whose session is not resident takes (load from storage + handler),
 * LevelDB and Redis, against raw reads of the same keys in the same invocation.
 *
 *   node tools/bench/sessions/load-latency.mjs [--runs=5] [--players=10000] [--warm=1000] [--only=level|redis]
 *
 * Per run, each case a fresh process (load-latency-case.mjs), interleaved: raw in-thread get,
 * RemoteStorage.get and .claim through the storage host thread, then Peony; LevelDB, then Redis.
 * Closed loop: one request at a time. The table gives, per case, the median [min–max] over runs of
 * each run's p50, p90, p99 and p99.9, and what Peony's own `stats().sessions.loadLatency` said.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { SOURCE_FLAGS, environment, fmtNum, parseArgs, runInterleaved, spawnChild, summarizeRecords, writeResults } from '../lib/run.mjs'
import { max, median, min } from '../lib/stats.mjs'

// Not from common.mjs: this process runs without the source conditions common.mjs's imports need.
const HERE = path.dirname(fileURLToPath(import.meta.url))

const args = parseArgs({ runs: 5, players: 10_000, warm: 1000, only: '' })
const MODES = ['raw-get', 'remote-get', 'remote-claim', 'peony']

function variant(name) {
  return {
    name,
    async run({ logDir, run }) {
      const child = spawnChild(path.join(HERE, 'load-latency-case.mjs'), [`--case=${name}`, `--players=${args.players}`, `--warm=${args.warm}`], {
        nodeFlags: SOURCE_FLAGS,
        logFile: path.join(logDir, `${name}-${run}.log`),
        cwd: HERE,
      })
      const ev = await child.wait((e) => e.bench === 'result', 170_000, `${name} result`)
      await child.exited
      return ev
    },
  }
}

const drivers = args.only === '' ? ['level', 'redis'] : [args.only]
const variants = drivers.flatMap((d) => MODES.map((m) => variant(`${d}-${m}`)))
const records = await runInterleaved({ name: 'sessions-load-latency', runs: args.runs, variants, timeoutMs: 180_000 })
const summary = summarizeRecords(records)

/** median [min–max] over the passing runs of field `f` (µs, or `scale` × the field). */
function over(recs, f, scale = 1) {
  const xs = recs.filter((r) => r.ok).map((r) => f(r) * scale)
  return { median: median(xs), min: min(xs), max: max(xs), n: xs.length }
}
const cell = (s, d = 0) => `**${fmtNum(s.median, d)}** [${fmtNum(s.min, d)}–${fmtNum(s.max, d)}]`
/** Per-run differences a − b of field `f` (runs where either failed are left out). */
function diff(a, b, f) {
  const xs = []
  records[a].forEach((r, i) => {
    const s = records[b][i]
    if (r?.ok && s?.ok) xs.push(f(r) - f(s))
  })
  return { median: median(xs), min: min(xs), max: max(xs), perRun: xs }
}

const out = { env: environment(), args, records, summary, drivers: {} }
const md = [
  `| first request, ${args.players.toLocaleString('en-US')} players one at a time (µs; median [min–max] of the runs' percentiles) | p50 | p90 | p99 | p99.9 | runs passed (disturbed) |`,
  '|---|---|---|---|---|---|',
]
for (const d of drivers) {
  const per = {}
  for (const m of MODES) {
    const name = `${d}-${m}`
    const recs = records[name]
    per[m] = { p50: over(recs, (r) => r.p50), p90: over(recs, (r) => r.p90), p99: over(recs, (r) => r.p99), p999: over(recs, (r) => r.p999) }
    const s = summary.variants[name]
    md.push(
      `| ${name} | ${cell(per[m].p50)} | ${cell(per[m].p90)} | ${cell(per[m].p99)} | ${cell(per[m].p999)} | ${s.passed}/${s.passed + s.failed} (${s.disturbed}) |`,
    )
  }
  const peony = records[`${d}-peony`]
  const ll = {
    p50: over(peony, (r) => r.loadLatency.p50, 1000),
    p90: over(peony, (r) => r.loadLatency.p90, 1000),
    p99: over(peony, (r) => r.loadLatency.p99, 1000),
    max: over(peony, (r) => r.loadLatency.max, 1000),
  }
  md.push(
    `| ${d}-peony: its own \`stats().sessions.loadLatency\` (claim + decode; histogram, ±9 %) | ${cell(ll.p50)} | ${cell(ll.p90)} | ${cell(ll.p99)} | max ${cell(ll.max)} | |`,
  )
  const diffs = {
    p50VsRemoteGet: diff(`${d}-peony`, `${d}-remote-get`, (r) => r.p50),
    p50VsRemoteClaim: diff(`${d}-peony`, `${d}-remote-claim`, (r) => r.p50),
    p50VsRawGet: diff(`${d}-peony`, `${d}-raw-get`, (r) => r.p50),
    p99VsRemoteGet: diff(`${d}-peony`, `${d}-remote-get`, (r) => r.p99),
    p99VsRawGet: diff(`${d}-peony`, `${d}-raw-get`, (r) => r.p99),
  }
  out.drivers[d] = { percentiles: per, loadLatencyUs: ll, differences: diffs }
}
md.push('', '| per-run difference (µs; median [min–max]) | p50 | p99 |', '|---|---|---|')
for (const d of drivers) {
  const x = out.drivers[d].differences
  md.push(`| ${d}-peony − ${d}-raw-get | ${cell(x.p50VsRawGet)} | ${cell(x.p99VsRawGet)} |`)
  md.push(`| ${d}-peony − ${d}-remote-get | ${cell(x.p50VsRemoteGet)} | ${cell(x.p99VsRemoteGet)} |`)
  md.push(`| ${d}-peony − ${d}-remote-claim | ${cell(x.p50VsRemoteClaim)} | |`)
}
md.push('', '"disturbed": other processes used ≥ 0.2 cores during the run (kept in the numbers, not retried).')
const file = writeResults('sessions-load-latency', out)
process.stdout.write(md.join('\n') + '\n')
process.stderr.write(`results: ${file}\n`)
