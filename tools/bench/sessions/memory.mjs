/**
 * Session memory benchmark (docs/benchmarks.md, "Sessions"; issue 3): Peony's own bytes per
 * resident session above a plain `Map<uid, state>` of the same states. Target: ≤ 256 bytes.
 *
 *   node tools/bench/sessions/memory.mjs [--runs=5] [--n=100000]
 *
 * Four variants, interleaved, each run a fresh `node --expose-gc` process (memory-case.mjs):
 * map-bytes, peony-bytes (a 1,000-byte Uint8Array state), map-rpg, peony-rpg (the example app's
 * Cultivator). A Peony run measures its N sessions dirty and then clean (after a flush). The
 * overhead is the per-run difference peony − map of the same run index.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { SOURCE_FLAGS, environment, fmtNum, parseArgs, runInterleaved, spawnChild, summarizeRecords, writeResults } from '../lib/run.mjs'
import { max, median, min, summarize } from '../lib/stats.mjs'

// Not from common.mjs: this process runs without the source conditions common.mjs's imports need.
const HERE = path.dirname(fileURLToPath(import.meta.url))

const args = parseArgs({ runs: 5, n: 100_000 })
const TARGET = 256

function variant(name, v, state) {
  return {
    name,
    async run({ logDir, run }) {
      const child = spawnChild(path.join(HERE, 'memory-case.mjs'), [`--variant=${v}`, `--state=${state}`, `--n=${args.n}`], {
        nodeFlags: ['--expose-gc', ...SOURCE_FLAGS],
        logFile: path.join(logDir, `${name}-${run}.log`),
        cwd: HERE,
      })
      const ev = await child.wait((e) => e.bench === 'result', 110_000, `${name} result`)
      await child.exited
      return ev
    },
  }
}

const records = await runInterleaved({
  name: 'sessions-memory',
  runs: args.runs,
  variants: [
    variant('map-bytes', 'map', 'bytes'),
    variant('peony-bytes', 'peony', 'bytes'),
    variant('map-rpg', 'map', 'rpg'),
    variant('peony-rpg', 'peony', 'rpg'),
  ],
  timeoutMs: 120_000,
})

/** Per-run peony − map (pairs where either failed are left out), over all pairs and over the undisturbed ones. */
function overhead(state, field) {
  const all = []
  const clean = []
  records[`map-${state}`].forEach((m, i) => {
    const p = records[`peony-${state}`][i]
    if (!m?.ok || !p?.ok) return
    const d = p[field] - m.value
    all.push(d)
    if (!m.disturbed && !p.disturbed) clean.push(d)
  })
  return { median: median(all), min: min(all), max: max(all), perRun: all, undisturbed: { median: median(clean), perRun: clean } }
}

const peonyField = (state, field) => summarize(records[`peony-${state}`].map((r) => (r.ok ? r[field] : null)))
const states = {
  bytes: 'a 1,000-byte Uint8Array',
  rpg: "the example app's Cultivator",
}
const result = { env: environment(), args, target: `overhead ≤ ${TARGET} bytes per session`, records, summary: summarizeRecords(records), states: {} }
const lines = [
  `| bytes per resident session (heapUsed + arrayBuffers), N = ${args.n.toLocaleString('en-US')} | median | [min–max] | runs passed (disturbed) |`,
  '|---|---|---|---|',
]
for (const [state, what] of Object.entries(states)) {
  const map = result.summary.variants[`map-${state}`]
  const dirty = peonyField(state, 'dirty')
  const cleanS = peonyField(state, 'clean')
  const oc = overhead(state, 'clean')
  const od = overhead(state, 'dirty')
  const disturbed = (v) => records[v].filter((r) => r.disturbed).length
  const holds = (o) => (o.undisturbed.perRun.length >= 3 ? o.undisturbed.median <= TARGET : null)
  result.states[state] = { map, peonyClean: cleanS, peonyDirty: dirty, overheadClean: oc, overheadDirty: od, holdsClean: holds(oc), holdsDirty: holds(od) }
  const row = (label, s, dist) =>
    `| ${label} | **${fmtNum(s.median, 0)}** | [${fmtNum(s.min, 0)}–${fmtNum(s.max, 0)}] | ${s.passed}/${s.passed + s.failed} (${dist}) |`
  lines.push(row(`${what}: Map<uid, state>`, map, disturbed(`map-${state}`)))
  lines.push(row(`${what}: Peony, clean (after a flush)`, cleanS, disturbed(`peony-${state}`)))
  lines.push(row(`${what}: Peony, dirty`, dirty, disturbed(`peony-${state}`)))
  const orow = (label, o, h) =>
    `| ${label} (median of per-run differences) | **${fmtNum(o.median, 0)}** | [${fmtNum(o.min, 0)}–${fmtNum(o.max, 0)}] | ${o.perRun.length} pairs; ≤ ${TARGET}: ${h === null ? 'inconclusive' : h ? '**holds**' : '**does not hold**'} |`
  lines.push(orow(`${what}: Peony's overhead, clean`, oc, result.states[state].holdsClean))
  lines.push(orow(`${what}: Peony's overhead, dirty`, od, result.states[state].holdsDirty))
}
lines.push('', '"disturbed": other processes used ≥ 0.2 cores during the run (kept in the numbers, not retried). Verdicts use the undisturbed pairs.')
const file = writeResults('sessions-memory', result)
process.stdout.write(lines.join('\n') + '\n')
process.stderr.write(`results: ${file}\n`)
