/**
 * Session flush benchmark (docs/benchmarks.md, "Sessions"; issue 3): writing 100,000 dirty 1 KB
 * sessions from a worker thread through the storage host thread, against the raw libraries
 * writing the same records in the same invocation. Targets (issue 9, item 8): ≥ 0.8 × the best
 * raw classic-level batches, ≥ 0.8 × the best raw Redis pipeline (median of the per-run ratios).
 *
 *   node tools/bench/sessions/flush.mjs [--runs=5] [--n=100000] [--only=level|redis] [--write-buffer-size=0] [--enc-chunks=500] [--warmup=0] [--decompose=true] [--sketch] [--prof]
 *
 * Per run, each a fresh process (flush-case.mjs), interleaved: raw with chunks of 100, 500
 * (Peony's flushBatchSize) and 1000, then Peony; LevelDB first, then Redis. The baseline of a run
 * is the best of its three raw chunk sizes; the ratio is Peony / that, per run.
 * Like-for-like baseline, reported beside the target's (not instead of it): `<driver>-raw-enc-<chunk>`
 * (`--enc-chunks`, comma-separated, default 500, Peony's flushBatchSize; '' for none), the raw
 * library writing the same records, but encoded from the sessions' states inside the timed span
 * (flush-case.mjs `--encode=inside`), the work any write-back must do; its ratio is Peony / the
 * best of those chunk sizes, per run.
 * `--warmup=N` (default 0, the target's method: each process's first flush, its code cold): N
 * other records written the same way before the timed span, on the raw and Peony sides alike
 * (flush-case.mjs), for the steady state a server that has flushed before is in. Caveat
 * (docs/benchmarks.md, flush, second pass): raw's LevelDB threads then cost ~300 ms more per
 * 100,000 records, not explained, so the ratios with a warm-up compare unequal work.
 * Decomposition (`--decompose`, on by default): the same records written with `writeFenced` in
 * calls of 500, serialized before timing, from this thread (`<driver>-direct-500`) and from a worker
 * thread through the host thread (`<driver>-remote-500`), so Peony / raw splits into the storage
 * layer, the host-thread hop, and the session manager (flush-case.mjs).
 * `--sketch` (off by default): two more variants per driver for the analysis, `<driver>-remote-500-x2`
 * (the decomposition's remote case with two writeFenced calls in flight) and `<driver>-sketch-500-x2`
 * (a sketch of a cheaper flush: encoding inside the timed span without the second allocation per
 * session, two calls in flight; flush-case.mjs). Neither is what Peony does.
 * Every run reads every record back and compares it byte for byte; Peony's run also checks that
 * each session's key was written by exactly one op of the flush's writeFenced calls.
 * CPU: each run reports the CPU time of each thread in the timed span (common.mjs threadTimes:
 * the worker, the storage host, the main thread, all others: LevelDB's write and compaction
 * threads, V8's GC helpers; and the redis-server), printed as a second table.
 * `--prof`: V8 CPU profiles of every thread of the non-raw runs (results/raw/sessions-flush/prof/);
 * `node tools/bench/sessions/profile-window.mjs <dir> --from=<µs> --to=<µs>` gives the flush's
 * span (a Peony run's `windowUs` in results/sessions-flush.json).
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { SOURCE_FLAGS, environment, fmtNum, parseArgs, runInterleaved, spawnChild, summarizeRecords, writeResults } from '../lib/run.mjs'
import { max, median, min } from '../lib/stats.mjs'

// Not from common.mjs: this process runs without the source conditions common.mjs's imports need.
const HERE = path.dirname(fileURLToPath(import.meta.url))

const args = parseArgs({ runs: 5, n: 100_000, only: '', writeBufferSize: 0, prof: false, decompose: true, sketch: false, encChunks: '500', warmup: 0 })
const CHUNKS = [100, 500, 1000]
const ENC_CHUNKS = String(args.encChunks)
  .split(',')
  .filter((x) => x !== '')
  .map(Number)
const TARGET = 0.8

function variant(name, caseName, extra = []) {
  return {
    name,
    async run({ logDir, run }) {
      const nodeFlags = [...SOURCE_FLAGS]
      if (args.prof && !caseName.endsWith('-raw')) {
        const dir = path.join(logDir, 'prof', `${name}-${run}`)
        fs.mkdirSync(dir, { recursive: true })
        nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${dir}`)
      }
      const warm = args.warmup > 0 && (caseName.endsWith('-raw') || caseName.endsWith('-peony')) ? [`--warmup=${args.warmup}`] : []
      const child = spawnChild(
        path.join(HERE, 'flush-case.mjs'),
        [`--case=${caseName}`, `--n=${args.n}`, `--write-buffer-size=${args.writeBufferSize}`, ...warm, ...extra],
        {
          nodeFlags,
          logFile: path.join(logDir, `${name}-${run}.log`),
          cwd: HERE,
        },
      )
      const ev = await child.wait((e) => e.bench === 'result', 290_000, `${name} result`)
      await child.exited
      return ev
    },
  }
}

const drivers = args.only === '' ? ['level', 'redis'] : [args.only]
const variants = []
for (const d of drivers) {
  for (const c of CHUNKS) variants.push(variant(`${d}-raw-${c}`, `${d}-raw`, [`--chunk=${c}`]))
  for (const c of ENC_CHUNKS) variants.push(variant(`${d}-raw-enc-${c}`, `${d}-raw`, [`--chunk=${c}`, '--encode=inside']))
  if (args.decompose) for (const k of ['direct', 'remote']) variants.push(variant(`${d}-${k}-500`, `${d}-${k}`, ['--chunk=500']))
  if (args.sketch) for (const k of ['remote', 'sketch']) variants.push(variant(`${d}-${k}-500-x2`, `${d}-${k}`, ['--chunk=500', '--inflight=2']))
  variants.push(variant(`${d}-peony`, `${d}-peony`))
}
const records = await runInterleaved({ name: 'sessions-flush', runs: args.runs, variants, timeoutMs: 300_000 })
const summary = summarizeRecords(records)

/** Per run: the best raw chunk size of that run, and Peony / it (runs where Peony or every raw failed are left out). */
function perRun(d) {
  const rows = []
  for (let i = 0; i < args.runs; i++) {
    const p = records[`${d}-peony`][i]
    const raws = CHUNKS.map((c) => ({ c, r: records[`${d}-raw-${c}`][i] })).filter((x) => x.r?.ok)
    if (!p?.ok || raws.length === 0) continue
    const best = raws.reduce((a, b) => (b.r.value > a.r.value ? b : a))
    const r500 = records[`${d}-raw-500`][i]
    const disturbed = p.disturbed || raws.some((x) => x.r.disturbed)
    const encs = ENC_CHUNKS.map((c) => records[`${d}-raw-enc-${c}`][i]).filter((r) => r?.ok)
    const bestEnc = encs.length === 0 ? null : Math.max(...encs.map((r) => r.value))
    rows.push({
      run: i,
      peony: p.value,
      best: best.r.value,
      bestChunk: best.c,
      ratio: p.value / best.r.value,
      ratio500: r500?.ok ? p.value / r500.value : null,
      bestEnc,
      ratioEnc: bestEnc === null ? null : p.value / bestEnc,
      disturbed,
    })
  }
  return rows
}

const out = { env: environment(), args, target: `peony ≥ ${TARGET} × the best raw chunk size, per run`, records, summary, drivers: {} }
const md = []
const title = { level: 'LevelDB (classic-level)', redis: 'Redis' }
for (const d of drivers) {
  const rows = perRun(d)
  const ratios = rows.map((r) => r.ratio)
  const clean = rows.filter((r) => !r.disturbed).map((r) => r.ratio)
  const r500 = rows.map((r) => r.ratio500).filter((x) => x !== null)
  const rEnc = rows.map((r) => r.ratioEnc).filter((x) => x !== null)
  const holds = clean.length >= 3 ? median(clean) >= TARGET : null
  out.drivers[d] = {
    perRun: rows,
    ratio: { median: median(ratios), min: min(ratios), max: max(ratios) },
    undisturbed: { median: median(clean), perRun: clean },
    ratioVs500: { median: median(r500), perRun: r500 },
    ratioVsEncodeInside: { median: median(rEnc), perRun: rEnc },
    holds,
  }
  md.push(
    `| flush of ${args.n.toLocaleString('en-US')} dirty 1 KB sessions, ${title[d]} (sessions/s) | median | [min–max] | runs passed (disturbed) |`,
    '|---|---|---|---|',
  )
  const extra = [...(args.decompose ? [`${d}-direct-500`, `${d}-remote-500`] : []), ...(args.sketch ? [`${d}-remote-500-x2`, `${d}-sketch-500-x2`] : [])]
  const encNames = ENC_CHUNKS.map((c) => `${d}-raw-enc-${c}`)
  for (const name of [...CHUNKS.map((c) => `${d}-raw-${c}`), ...encNames, ...extra, `${d}-peony`]) {
    const s = summary.variants[name]
    md.push(`| ${name} | **${fmtNum(s.median, 0)}** | [${fmtNum(s.min, 0)}–${fmtNum(s.max, 0)}] | ${s.passed}/${s.passed + s.failed} (${s.disturbed}) |`)
  }
  const bests = rows.map((r) => r.best)
  md.push(
    `| best raw chunk size of each run | **${fmtNum(median(bests), 0)}** | [${fmtNum(min(bests), 0)}–${fmtNum(max(bests), 0)}] | chunks: ${rows.map((r) => r.bestChunk).join(', ')} |`,
  )
  md.push(
    `| ratio peony / best raw (median of per-run ratios) | **${fmtNum(median(ratios), 2)}** | [${fmtNum(min(ratios), 2)}–${fmtNum(max(ratios), 2)}] | ${ratios.length} runs |`,
  )
  md.push(`| same, undisturbed runs only | **${fmtNum(median(clean), 2)}** | [${fmtNum(min(clean), 2)}–${fmtNum(max(clean), 2)}] | ${clean.length} runs |`)
  md.push(
    `| ratio peony / raw-500 (same chunk size) | **${fmtNum(median(r500), 2)}** | [${fmtNum(min(r500), 2)}–${fmtNum(max(r500), 2)}] | ${r500.length} runs |`,
  )
  if (rEnc.length > 0)
    md.push(
      `| ratio peony / best raw-enc (like for like: states encoded inside the timed span) | **${fmtNum(median(rEnc), 2)}** | [${fmtNum(min(rEnc), 2)}–${fmtNum(max(rEnc), 2)}] | ${rEnc.length} runs |`,
    )
  if (args.decompose) {
    const rr = (a, b) => {
      const xs = []
      records[a].forEach((r, i) => {
        const q = records[b][i]
        if (r?.ok && q?.ok) xs.push(r.value / q.value)
      })
      out.drivers[d][`${a}/${b}`] = { median: median(xs), perRun: xs }
      md.push(`| ratio ${a} / ${b} | **${fmtNum(median(xs), 2)}** | [${fmtNum(min(xs), 2)}–${fmtNum(max(xs), 2)}] | ${xs.length} runs |`)
    }
    rr(`${d}-direct-500`, `${d}-raw-500`)
    rr(`${d}-remote-500`, `${d}-direct-500`)
    rr(`${d}-peony`, `${d}-remote-500`)
  }
  if (args.sketch) {
    const vsBest = (name) => {
      const xs = []
      for (const r of rows) {
        const q = records[name][r.run]
        if (q?.ok) xs.push(q.value / r.best)
      }
      out.drivers[d][`${name}/best raw`] = { median: median(xs), perRun: xs }
      md.push(
        `| ratio ${name} / best raw (a sketch, not Peony) | **${fmtNum(median(xs), 2)}** | [${fmtNum(min(xs), 2)}–${fmtNum(max(xs), 2)}] | ${xs.length} runs |`,
      )
    }
    vsBest(`${d}-remote-500-x2`)
    vsBest(`${d}-sketch-500-x2`)
  }
  md.push(
    `| target: peony ≥ ${TARGET} × raw | ${holds === null ? '**inconclusive** (fewer than 3 undisturbed runs)' : holds ? '**holds**' : '**does not hold**'} | | |`,
    '',
  )
  // CPU time in the timed span, per thread role (median over the runs; ms per n sessions).
  const roles = ['total', 'worker', 'host', 'main', 'other', ...(d === 'redis' ? ['redis'] : [])]
  md.push(`| CPU ms in the timed span, ${title[d]} (median of runs) | ${roles.join(' | ')} |`, `|---|${roles.map(() => '---').join('|')}|`)
  const cpuOf = {}
  for (const name of [...CHUNKS.map((c) => `${d}-raw-${c}`), ...encNames, ...extra, `${d}-peony`]) {
    const rs = records[name].filter((r) => r?.ok && r.cpuMs !== undefined)
    if (rs.length === 0) continue
    cpuOf[name] = Object.fromEntries(roles.map((k) => [k, median(rs.map((r) => r.cpuMs[k] ?? 0))]))
    md.push(`| ${name} | ${roles.map((k) => fmtNum(cpuOf[name][k], 0)).join(' | ')} |`)
  }
  out.drivers[d].cpuMs = cpuOf
  md.push('')
}
if (args.warmup > 0)
  md.push(
    `Warm-up: ${args.warmup.toLocaleString('en-US')} other records written the same way before each timed span (raw and Peony alike); not the target's method, and raw's LevelDB threads cost more after it (docs/benchmarks.md): compare CPU per thread, not the ratios.`,
  )
md.push(
  `Write buffer: ${args.writeBufferSize > 0 ? `${args.writeBufferSize} bytes` : "classic-level's default (4 MiB)"} on both LevelDB sides. "disturbed": other processes used ≥ 0.2 cores during the run (kept in the numbers, not retried); a run's ratio counts as disturbed when Peony's or any of its raw runs was.`,
)
const file = writeResults('sessions-flush', out)
process.stdout.write(md.join('\n') + '\n')
process.stderr.write(`results: ${file}\n`)
