/**
 * One run of a throughput or latency benchmark: fresh receiver process (a baseline program or
 * the Peony host), fresh sender process, the check of every task, and the numbers.
 *
 *   throughput = tasks / (handler time of the last task − sender's time just before its first send)
 *   latency    = handler time − send stamp, per task, for tasks sent after the warm-up
 */
import dgram from 'node:dgram'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { BENCH_DIR, SOURCE_FLAGS, freePort, spawnChild, stopChildren } from './run.mjs'
import { expectedPerUid } from './tasks.mjs'
import { verify } from './order.mjs'
import { latencySummary } from './stats.mjs'

/** The receivers a run can use. */
export const RECEIVERS = {
  'bare-pipeline': { script: path.join(BENCH_DIR, 'bare-pipeline/master.mjs'), nodeFlags: [] },
  'bare-router': { script: path.join(BENCH_DIR, 'bare-router/main.mjs'), nodeFlags: [] },
  peony: { script: path.join(BENCH_DIR, 'peony/host.mjs'), nodeFlags: SOURCE_FLAGS, peony: true },
  'peony-dist': { script: path.join(BENCH_DIR, 'peony/host.mjs'), nodeFlags: [], peony: true },
}

/**
 * The Peony host of another checkout of this repository (its dependencies installed), run from
 * its sources: `--base=<dir>` adds it as the variant `peony-base`, interleaved with the others,
 * so a change is measured against an earlier commit in the same invocation.
 * @param {string} dir
 */
export function baseReceiver(dir) {
  const script = path.resolve(dir, 'tools/bench/peony/host.mjs')
  if (!fs.existsSync(script)) throw new Error(`--base=${dir}: no ${script} (a checkout of this repository with pnpm install done)`)
  RECEIVERS['peony-base'] = { script, nodeFlags: SOURCE_FLAGS, peony: true }
  return 'peony-base'
}

/**
 * What a results file records of `--base`: the checkout's commit, not its path on this machine.
 * @param {Record<string, unknown>} o
 */
export function recordedOptions(o) {
  if (!o.base) return o
  let commit = 'unknown commit'
  try {
    commit = execFileSync('git', ['-C', String(o.base), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
  } catch {
    // not a git checkout: say so rather than record the path
  }
  return { ...o, base: `checkout at ${commit}` }
}

/**
 * With `--base`, the markdown line of the ratio peony / peony-base (median of per-run ratios).
 * @param {any} records
 * @param {(records: any, ratio: any) => any} summarizeRecords
 */
export function baseRatioLine(records, summarizeRecords, fmt) {
  if (records['peony-base'] === undefined) return ''
  const r = summarizeRecords(records, { numerator: 'peony', denominator: 'peony-base' })
  const c = r.cleanRatio
  return `\n\npeony / peony-base (median of per-run ratios): **${fmt(r.ratio.median, 3)}** [${fmt(Math.min(...r.ratio.perRun), 3)}–${fmt(Math.max(...r.ratio.perRun), 3)}] over ${r.ratio.perRun.length} pairs; undisturbed pairs: ${fmt(c.median, 3)} over ${c.perRun.length}`
}

/** A UDP port that was free a moment ago. */
export function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4')
    s.on('error', reject)
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/**
 * Runs one throughput (or paced latency) run.
 * @param {{receiver: keyof typeof RECEIVERS, tasks: number, batch: number, window?: number, rate?: number,
 *          latency?: boolean, warmupMs?: number, logDir: string, label: string, uids?: number, seed?: number,
 *          profDir?: string, keepLatency?: boolean,
 *          onReady?: (r: {endpoint: string}) => Promise<{stop: () => Promise<any>}>}} c  onReady: starts something
 *          beside the sender once the receiver is ready, stopped (its report kept as `during`) after the result; profDir: run the receiver with --cpu-prof, profiles
 *          in profDir/label; keepLatency: keep the raw latency files (their folder is returned as latencyDir)
 */
export async function throughputRun(c) {
  const rcv = RECEIVERS[c.receiver]
  const port = await freePort()
  const endpoint = `tcp://127.0.0.1:${port}`
  const feedbackPort = (c.window ?? 0) > 0 ? await freeUdpPort() : 0
  const latencyDir = c.latency ? fs.mkdtempSync(path.join(c.logDir, `${c.label}-lat-`)) : ''
  const logFile = path.join(c.logDir, `${c.label}.log`)
  const rArgs = [`--endpoint=${endpoint}`, `--tasks=${c.tasks}`, `--feedback-port=${feedbackPort}`]
  if (c.latency) rArgs.push('--latency', `--latency-dir=${latencyDir}`)
  if (rcv.peony) rArgs.push(`--forwarder=tcp://127.0.0.1:${await freePort()}`, `--report-dir=${c.logDir}`)
  let receiver
  let sender
  let during
  try {
    const profFlags = c.profDir ? ['--cpu-prof', `--cpu-prof-dir=${path.join(c.profDir, c.label)}`] : []
    receiver = spawnChild(rcv.script, rArgs, { nodeFlags: [...rcv.nodeFlags, ...profFlags], logFile })
    const ready = await receiver.wait((e) => e.bench === 'ready', 60_000, `${c.receiver} ready`)
    // Something else that runs against the receiver during the run (the storm bench's malformed
    // frames); it returns what stops it and what it reports.
    during = c.onReady ? await c.onReady({ endpoint }) : undefined
    const sArgs = [
      '--mode=stream',
      `--endpoint=${endpoint}`,
      `--tasks=${c.tasks}`,
      `--batch=${c.batch}`,
      `--window=${c.window ?? 0}`,
      `--feedback-port=${feedbackPort}`,
      `--rate=${c.rate ?? 0}`,
      `--stamp=${c.latency ? 1 : 0}`,
      `--uids=${c.uids ?? 1000}`,
      `--seed=${c.seed ?? 1}`,
    ]
    sender = spawnChild(path.join(BENCH_DIR, 'lib/sender.mjs'), sArgs, { logFile, stdin: true })
    const sent = await sender.wait((e) => e.bench === 'sent', 300_000, 'sender done')
    const result = await receiver.wait((e) => e.bench === 'result', 120_000, `${c.receiver} result`)
    const duringReport = during ? await during.stop() : undefined
    sender.proc.stdin.end()
    // Let the receiver exit on its own (a --cpu-prof profile is written at exit), within reason.
    await Promise.race([receiver.exited, new Promise((r) => setTimeout(r, 15_000).unref())])
    await stopChildren([sender, receiver], 10_000)
    const check = verify(result.reports, expectedPerUid(c.tasks, { uids: c.uids ?? 1000, seed: c.seed ?? 1 }))
    const elapsedMs = check.lastAt - sent.t0
    const out = {
      value: c.tasks / (elapsedMs / 1000),
      ok: check.ok,
      errors: check.errors,
      handled: check.handled,
      elapsedMs,
      sendRate: sent.sendRate,
      stalls: sent.stalls,
      maxOutstanding: sent.maxOutstanding,
      lateFrames: sent.late,
      maxLateMs: sent.maxLateMs,
      skippedMs: sent.skippedMs,
      startMs: ready.startMs,
      peonyStats: result.stats ? pickStats(result.stats) : undefined,
      maxPending: result.maxPending,
      during: duringReport,
    }
    if (c.latency) {
      out.latency = latencyOf(result.reports, sent.t0 + (c.warmupMs ?? 1000))
      if (c.keepLatency) out.latencyDir = latencyDir
      else fs.rmSync(latencyDir, { recursive: true, force: true })
    }
    if (!check.ok) out.error = check.errors.slice(0, 3).join('; ')
    return out
  } finally {
    await during?.stop().catch(() => {})
    if (sender?.proc.stdin && !sender.proc.stdin.destroyed) sender.proc.stdin.end()
    await stopChildren([sender, receiver], 5_000)
  }
}

function pickStats(s) {
  return {
    client_req: s.client_req,
    discard_tasks: s.discard_tasks,
    refused: s.refused,
    rejects: s.rejects,
    lost_in_flight: s.lost_in_flight?.all,
    requeued: s.requeued,
    deaths: s.deaths,
    dispatch: s.dispatch,
  }
}

/** Merges the latency files of every thread; samples sent before `from` (warm-up) are left out. */
function latencyOf(reports, from) {
  const parts = []
  let warm = 0
  for (const r of reports) {
    if (!r.latencyFile) continue
    const b = fs.readFileSync(r.latencyFile)
    const f = new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8)
    const keep = new Float64Array(f.length / 2)
    let n = 0
    for (let i = 0; i < f.length; i += 2) {
      if (f[i] < from) warm++
      else keep[n++] = f[i + 1]
    }
    parts.push(keep.subarray(0, n))
  }
  const all = new Float64Array(parts.reduce((a, p) => a + p.length, 0))
  let off = 0
  for (const p of parts) {
    all.set(p, off)
    off += p.length
  }
  return { ...latencySummary(all), warmupSamples: warm }
}

/**
 * A whole throughput benchmark: baseline and Peony interleaved for `runs` runs, the summary, the
 * results file and the markdown table (printed on stdout).
 * @param {{name: string, baseline: keyof typeof RECEIVERS, batch: number, minRatio: number,
 *          options: {runs: number, tasks: number, window: number, peony: string, only: string, prof: boolean}}} spec
 */
export async function throughputBench(spec) {
  const { environment, runInterleaved, summarizeRecords, writeResults, markdownTable, RESULTS_DIR, verdict, fmtNum } = await import('./run.mjs')
  const o = spec.options
  const env = environment()
  const peonyReceiver = o.peony === 'dist' ? 'peony-dist' : 'peony'
  const profDir = o.prof ? path.join(RESULTS_DIR, 'raw', spec.name, 'prof') : undefined
  if (profDir) fs.rmSync(profDir, { recursive: true, force: true })
  const common = { tasks: o.tasks, batch: spec.batch, window: o.window, profDir }
  const variants = [
    { name: spec.baseline, run: (ctx) => throughputRun({ ...common, receiver: spec.baseline, logDir: ctx.logDir, label: `${spec.baseline}-${ctx.run}` }) },
    { name: 'peony', run: (ctx) => throughputRun({ ...common, receiver: peonyReceiver, logDir: ctx.logDir, label: `peony-${ctx.run}` }) },
  ].filter((v) => !o.only || v.name === o.only)
  if (o.base) {
    const base = baseReceiver(o.base)
    variants.push({ name: 'peony-base', run: (ctx) => throughputRun({ ...common, receiver: base, logDir: ctx.logDir, label: `peony-base-${ctx.run}` }) })
  }
  const records = await runInterleaved({ name: spec.name, runs: o.runs, variants })
  const summary = summarizeRecords(records, records.peony && records[spec.baseline] ? { numerator: 'peony', denominator: spec.baseline } : undefined)
  const holds = summary.cleanRatio ? verdict(summary.cleanRatio, (m) => m >= spec.minRatio) : null
  const target = { text: `peony ≥ ${spec.minRatio} × ${spec.baseline} (judged on the undisturbed pairs)`, holds }
  const title = `${spec.batch === 1 ? '1 task per message' : `${spec.batch}-task frames`}, ${o.tasks.toLocaleString('en-US')} tasks, window ${o.window || 'open'}`
  const table = markdownTable({ title, unit: 'tasks/s', summary, target }) + baseRatioLine(records, summarizeRecords, fmtNum)
  const file = writeResults(spec.name, {
    bench: spec.name,
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
  if (profDir) console.error(`cpu profiles: ${profDir} (summarize with: node tools/bench/lib/profile-summary.mjs <dir>)`)
  return { summary, target, records }
}
