/**
 * Run orchestration of the benchmark suite.
 *
 * A benchmark is a set of variants (a baseline and Peony) run `runs` times, interleaved
 * (baseline, peony, baseline, peony, …), each run in fresh child processes. A child prints JSON
 * lines on stdout; the ones with a `bench` key are its events (ready, result, …), anything else
 * (logs) goes to the run's log file with its stderr. Nothing is retried: a run that throws, times
 * out or fails its check is recorded as failed with the reason, and the summary says how many.
 */
import { spawn, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { median, min, max, summarize, ratios } from './stats.mjs'

/** The bench package folder (tools/bench). */
export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
/** The repository root. */
export const REPO_DIR = path.resolve(BENCH_DIR, '../..')
/** Where results go (`<case>.json`), and `raw/` for child logs (not committed). */
export const RESULTS_DIR = path.join(BENCH_DIR, 'results')

/**
 * A script URL of a V8 CPU profile, shortened for reports: the path after the last
 * `node_modules/`, else the path inside this repository, else the URL's path unchanged.
 * @param {string | undefined} url
 */
export function profileScript(url) {
  if (!url) return '(native/vm)'
  const u = url.replace(/^file:\/\//, '')
  const nm = u.lastIndexOf('node_modules/')
  if (nm >= 0) return u.slice(nm + 13)
  return u.startsWith(REPO_DIR + path.sep) ? u.slice(REPO_DIR.length + 1) : u
}

/** Node flags that run Peony from its TypeScript sources. */
export const SOURCE_FLAGS = ['--conditions=@peony/source', '--import', 'tsx']

/**
 * Parses `--name=value` flags against defaults (numbers and booleans are converted).
 * @template {Record<string, string|number|boolean>} T
 * @param {T} defaults
 * @param {string[]} [argv]
 * @returns {T}
 */
export function parseArgs(defaults, argv = process.argv.slice(2)) {
  const out = { ...defaults }
  for (const a of argv) {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a)
    if (!m) throw new TypeError(`unexpected argument ${a}`)
    const k = m[1].replace(/-([a-z])/g, (_, c) => c.toUpperCase())
    if (!(k in defaults)) throw new TypeError(`unknown flag --${m[1]} (known: ${Object.keys(defaults).join(', ')})`)
    const v = m[2] ?? 'true'
    const d = defaults[k]
    out[k] = typeof d === 'number' ? Number(v) : typeof d === 'boolean' ? v === 'true' || v === '1' : v
    if (typeof d === 'number' && !Number.isFinite(out[k])) throw new TypeError(`--${m[1]} must be a number`)
  }
  return out
}

/** A free TCP port on 127.0.0.1 (bound and released; tiny race, fine for a bench). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Sleeps `ms` milliseconds. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * @typedef {object} Child
 * @property {import('node:child_process').ChildProcess} proc
 * @property {object[]} events          every `bench` line so far
 * @property {(pred: (e: any) => boolean, timeoutMs?: number, what?: string) => Promise<any>} wait
 * @property {Promise<number|null>} exited  resolves with the exit code (or null when killed)
 * @property {() => string} tail         last lines of stderr/log
 * @property {(signal?: NodeJS.Signals) => void} kill  signals this child (by its own handle)
 * @property {(line: string) => void} send  writes a line to its stdin
 */

/**
 * Spawns `node [nodeFlags] script args` as a fresh child. Its stdout JSON lines with a `bench`
 * key are events; other stdout and all stderr go to `logFile`.
 * @param {string} script absolute path
 * @param {string[]} args
 * @param {{nodeFlags?: string[], env?: Record<string,string>, logFile?: string, cwd?: string, stdin?: boolean}} [opts]
 * @returns {Child}
 */
export function spawnChild(script, args, opts = {}) {
  const proc = spawn(process.execPath, [...(opts.nodeFlags ?? []), script, ...args], {
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...(opts.env ?? {}) },
    cwd: opts.cwd ?? BENCH_DIR,
  })
  return wrapChild(proc, opts.logFile)
}

/**
 * Wraps an already spawned child process (see spawnChild).
 * @param {import('node:child_process').ChildProcess} proc
 * @param {string} [logFile]
 * @returns {Child}
 */
export function wrapChild(proc, logFile) {
  const events = []
  const waiters = new Set()
  const tailLines = []
  const log = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : null
  const keep = (line) => {
    tailLines.push(line)
    if (tailLines.length > 30) tailLines.shift()
    log?.write(line + '\n')
  }
  let exitCode
  let buf = ''
  proc.stdout.setEncoding('utf8')
  proc.stdout.on('data', (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      let ev
      if (line.startsWith('{')) {
        try {
          ev = JSON.parse(line)
        } catch {
          ev = undefined
        }
      }
      // peony-server's one ready line (apps/peony-server) is an event too.
      if (ev === undefined && line.startsWith('peony ready:')) ev = { bench: 'server-ready', line }
      if (ev && typeof ev === 'object' && 'bench' in ev) {
        ev.receivedAt ??= performance.timeOrigin + performance.now()
        events.push(ev)
        for (const w of [...waiters]) if (w.pred(ev)) w.resolve(ev)
      } else keep(line)
    }
  })
  let ebuf = ''
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', (d) => {
    ebuf += d
    let i
    while ((i = ebuf.indexOf('\n')) >= 0) {
      keep(ebuf.slice(0, i))
      ebuf = ebuf.slice(i + 1)
    }
  })
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exitCode = code ?? signal
      // Let the pipes drain before waking waiters that look at events.
      setImmediate(() => {
        if (ebuf) keep(ebuf)
        log?.end()
        for (const w of [...waiters])
          w.reject(new Error(`child exited (${exitCode}) while waiting for ${w.what}; last output:\n${tailLines.slice(-12).join('\n')}`))
        resolve(code)
      })
    })
  })
  return {
    proc,
    events,
    exited,
    tail: () => tailLines.join('\n'),
    kill(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
    },
    send(line) {
      proc.stdin?.write(line + '\n')
    },
    wait(pred, timeoutMs = 60_000, what = 'an event') {
      const found = events.find(pred)
      if (found) return Promise.resolve(found)
      if (exitCode !== undefined)
        return Promise.reject(new Error(`child already exited (${exitCode}) before ${what}; last output:\n${tailLines.slice(-12).join('\n')}`))
      return new Promise((resolve, reject) => {
        const w = {
          pred,
          what,
          resolve: (e) => {
            clearTimeout(timer)
            waiters.delete(w)
            resolve(e)
          },
          reject: (e) => {
            clearTimeout(timer)
            waiters.delete(w)
            reject(e)
          },
        }
        const timer = setTimeout(
          () => w.reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last output:\n${tailLines.slice(-12).join('\n')}`)),
          timeoutMs,
        )
        waiters.add(w)
      })
    },
  }
}

/**
 * Stops children: SIGTERM, then SIGKILL after `graceMs` for any still running.
 * @param {(Child|undefined)[]} children
 * @param {number} [graceMs]
 */
export async function stopChildren(children, graceMs = 3000) {
  const live = children.filter((c) => c !== undefined)
  for (const c of live) c.kill('SIGTERM')
  const timer = setTimeout(() => {
    for (const c of live) c.kill('SIGKILL')
  }, graceMs)
  await Promise.all(live.map((c) => c.exited))
  clearTimeout(timer)
}

/** Reads the busy share of all CPUs (in cores) over `ms`, from /proc/stat. */
export async function cpuBusyCores(ms = 300) {
  const read = () => {
    try {
      const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]
      const v = line.trim().split(/\s+/).slice(1).map(Number)
      const idle = v[3] + (v[4] ?? 0)
      const total = v.reduce((a, b) => a + b, 0)
      return { idle, total }
    } catch {
      return undefined
    }
  }
  const a = read()
  await sleep(ms)
  const b = read()
  if (!a || !b || b.total === a.total) return NaN
  const busy = 1 - (b.idle - a.idle) / (b.total - a.total)
  return +(busy * os.cpus().length).toFixed(2)
}

/**
 * CPU jiffies (1/100 s) of the whole machine (busy) and of this process plus its reaped children.
 * @returns {{busy: number, own: number} | undefined}
 */
function cpuJiffies() {
  try {
    const v = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    const total = v.reduce((a, b) => a + b, 0)
    const busy = total - v[3] - (v[4] ?? 0)
    // /proc/self/stat: fields after the ")" — utime stime cutime cstime are the 12th–15th.
    const self = fs.readFileSync('/proc/self/stat', 'utf8')
    const f = self
      .slice(self.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number)
    const own = f[11] + f[12] + f[13] + f[14]
    return { busy, own }
  } catch {
    return undefined
  }
}

/**
 * Starts measuring the CPU that processes other than this one and its children use; the returned
 * function gives it in cores over the span (children must have exited and been reaped by then).
 */
export function foreignCpu() {
  const a = cpuJiffies()
  const t0 = Date.now()
  return () => {
    const b = cpuJiffies()
    const s = (Date.now() - t0) / 1000
    if (!a || !b || s <= 0) return NaN
    return +Math.max(0, (b.busy - a.busy - (b.own - a.own)) / 100 / s).toFixed(2)
  }
}

/** Where this machine and this code stand (for the results file and the docs). */
export function environment() {
  const req = createRequire(path.join(BENCH_DIR, 'package.json'))
  const version = (name) => {
    try {
      return JSON.parse(fs.readFileSync(req.resolve(`${name}/package.json`), 'utf8')).version
    } catch {
      return undefined
    }
  }
  let commit
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_DIR, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: REPO_DIR, encoding: 'utf8' }).trim()
    if (dirty) commit += '+uncommitted'
  } catch {
    commit = undefined
  }
  return {
    date: new Date().toISOString(),
    node: process.version,
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpu: os.cpus()[0]?.model,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()}`,
    zeromq: version('zeromq'),
    msgpackr: version('msgpackr'),
    commit,
    loadavg: os.loadavg().map((x) => +x.toFixed(2)),
  }
}

/**
 * @typedef {object} Variant
 * @property {string} name
 * @property {(ctx: {run: number, logDir: string}) => Promise<{value: number, ok?: boolean, error?: string} & Record<string, unknown>>} run
 */

/**
 * Runs every variant `runs` times, interleaved, in order. Never retries. Each run's record:
 * `{run, ok, value|null, busyBefore, error?, ...details}`.
 * Before each run it waits up to `idleWaitMs` (10 s) for the other processes of the machine to use
 * less than `idleBelowCores` (0.3) cores, and records what it saw (`busyBefore`, `idleWaitMs`);
 * during the run it measures the CPU used by processes that are not this one or its children
 * (`foreignCores`); a run with ≥ `disturbedAtCores` (0.2) is flagged `disturbed` (kept, not retried).
 * @param {{name: string, runs: number, variants: Variant[], timeoutMs?: number, idleWaitMs?: number, idleBelowCores?: number, disturbedAtCores?: number}} spec
 */
export async function runInterleaved(spec) {
  const logDir = path.join(RESULTS_DIR, 'raw', spec.name)
  fs.mkdirSync(logDir, { recursive: true })
  /** @type {Record<string, any[]>} */
  const records = Object.fromEntries(spec.variants.map((v) => [v.name, []]))
  for (let r = 0; r < spec.runs; r++) {
    for (const v of spec.variants) {
      // Like the Python baseline's harness: wait (a bounded time) for the machine to be idle.
      const tWait = Date.now()
      let busyBefore = await cpuBusyCores(300)
      while (busyBefore > (spec.idleBelowCores ?? 0.3) && Date.now() - tWait < (spec.idleWaitMs ?? 10_000)) busyBefore = await cpuBusyCores(500)
      const idleWaitMs = Date.now() - tWait
      const load1 = +os.loadavg()[0].toFixed(2)
      const t0 = Date.now()
      const foreign = foreignCpu()
      let rec
      try {
        const res = await withTimeout(v.run({ run: r, logDir, variant: v.name }), spec.timeoutMs ?? 120_000, `${v.name} run ${r}`)
        const ok = res.ok !== false && Number.isFinite(res.value)
        rec = { run: r, ok, ...res, value: ok ? res.value : null, rawValue: res.value }
      } catch (e) {
        rec = { run: r, ok: false, value: null, error: String(e?.message ?? e) }
      }
      // Give the children a moment to be reaped so their CPU counts as ours.
      await sleep(100)
      rec.foreignCores = foreign()
      rec.disturbed = rec.foreignCores >= (spec.disturbedAtCores ?? 0.2)
      rec.busyBefore = busyBefore
      rec.idleWaitMs = idleWaitMs
      rec.load1 = load1
      rec.wallMs = Date.now() - t0
      records[v.name].push(rec)
      const shown = rec.ok ? fmtNum(rec.value) : `FAILED: ${(rec.error ?? (rec.errors ?? []).join('; ')).split('\n')[0].slice(0, 300)}`
      process.stderr.write(
        `[${spec.name}] run ${r + 1}/${spec.runs} ${v.name}: ${shown}${rec.note ? ` (${rec.note})` : ''} [other processes: ${rec.foreignCores} cores during the run${rec.disturbed ? ' (DISTURBED)' : ''}, ${busyBefore} before${idleWaitMs > 1000 ? `, waited ${(idleWaitMs / 1000).toFixed(0)} s` : ''}; load ${load1}]\n`,
      )
    }
  }
  return records
}

function withTimeout(p, ms, what) {
  let timer
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
    }),
  ])
}

/** A number for tables: thousands separators, or 2 decimals below 100. */
export function fmtNum(x, digits) {
  if (x === null || x === undefined || !Number.isFinite(x)) return 'n/a'
  const d = digits ?? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2)
  return x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
}

/**
 * Summarizes records: per variant median [min–max] of the passing runs, and the per-run
 * ratio `numerator / denominator` (runs where either failed are left out).
 * @param {Record<string, any[]>} records
 * @param {{numerator: string, denominator: string}} [ratio]
 */
export function summarizeRecords(records, ratio) {
  const variants = Object.fromEntries(
    Object.entries(records).map(([k, recs]) => [k, { ...summarize(recs.map((r) => r.value)), disturbed: recs.filter((r) => r.disturbed).length }]),
  )
  const out = { variants }
  if (ratio) {
    const a = records[ratio.numerator].map((r) => r.value)
    const b = records[ratio.denominator].map((r) => r.value)
    out.ratio = { ...ratio, ...ratios(a, b) }
    // The same over the pairs where neither run was disturbed by other processes.
    const clean = (i) => !records[ratio.numerator][i]?.disturbed && !records[ratio.denominator][i]?.disturbed
    out.cleanRatio = {
      ...ratio,
      ...ratios(
        a.map((v, i) => (clean(i) ? v : null)),
        b.map((v, i) => (clean(i) ? v : null)),
      ),
    }
  }
  return out
}

/**
 * Per-run differences a[i] − b[i] in value (pairs where either failed are left out), over all
 * pairs and over the undisturbed ones, with their medians.
 * @param {Record<string, any[]>} records
 * @param {string} a
 * @param {string} b
 */
export function pairDifferences(records, a, b) {
  const all = []
  const clean = []
  records[a].forEach((r, i) => {
    const s = records[b][i]
    if (!r?.ok || !s?.ok) return
    all.push(r.value - s.value)
    if (!r.disturbed && !s.disturbed) clean.push(r.value - s.value)
  })
  return { median: median(all), perRun: all, clean: { median: median(clean), perRun: clean } }
}

/**
 * The verdict on a target: from the undisturbed pairs when there are at least `minClean` of
 * them, otherwise null (inconclusive).
 * @param {{perRun: number[], median: number}} clean
 * @param {(median: number) => boolean} test
 * @param {number} [minClean]
 * @returns {boolean | null}
 */
export function verdict(clean, test, minClean = 3) {
  return clean.perRun.length >= minClean ? test(clean.median) : null
}

/**
 * Writes `results/<name>.json` (every run's record, the summary, the environment; the latest
 * invocation wins) plus a copy under `results/raw/history/`, and returns the path.
 * @param {string} name
 * @param {object} data
 */
export function writeResults(name, data) {
  fs.mkdirSync(RESULTS_DIR, { recursive: true })
  const file = path.join(RESULTS_DIR, `${name}.json`)
  const text = JSON.stringify(data, null, 2) + '\n'
  fs.writeFileSync(file, text)
  // Every invocation also keeps its own copy (results/raw/ is not committed).
  const history = path.join(RESULTS_DIR, 'raw', 'history')
  fs.mkdirSync(history, { recursive: true })
  fs.writeFileSync(path.join(history, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}.json`), text)
  return file
}

/**
 * A markdown table of one benchmark: one row per variant, then the ratio and the target.
 * @param {{title: string, unit: string, summary: ReturnType<typeof summarizeRecords>, target?: {text: string, holds: boolean|null},
 *          digits?: number, notes?: string[], extraRows?: string[]}} t
 */
export function markdownTable(t) {
  const lines = [`| ${t.title} | median | [min–max] | runs passed (disturbed) |`, '|---|---|---|---|']
  for (const [name, s] of Object.entries(t.summary.variants)) {
    lines.push(
      `| ${name} (${t.unit}) | **${fmtNum(s.median, t.digits)}** | [${fmtNum(s.min, t.digits)}–${fmtNum(s.max, t.digits)}] | ${s.passed}/${s.passed + s.failed} (${s.disturbed ?? 0}) |`,
    )
  }
  if (t.summary.ratio) {
    const r = t.summary.ratio
    lines.push(
      `| ratio ${r.numerator} / ${r.denominator} (median of per-run ratios) | **${fmtNum(r.median, 2)}** | [${fmtNum(min(r.perRun), 2)}–${fmtNum(max(r.perRun), 2)}] | ${r.perRun.length} pairs |`,
    )
    const c = t.summary.cleanRatio
    if (c)
      lines.push(
        `| same, undisturbed pairs only | **${fmtNum(c.median, 2)}** | [${fmtNum(min(c.perRun), 2)}–${fmtNum(max(c.perRun), 2)}] | ${c.perRun.length} pairs |`,
      )
  }
  for (const row of t.extraRows ?? []) lines.push(row)
  if (t.target)
    lines.push(
      `| target: ${t.target.text} | ${t.target.holds === null ? '**inconclusive** (fewer than 3 undisturbed runs)' : t.target.holds ? '**holds**' : '**does not hold**'} | | |`,
    )
  lines.push('', '"disturbed": other processes used ≥ 0.2 cores during the run (kept in the numbers, not retried).')
  for (const n of t.notes ?? []) lines.push('', n)
  return lines.join('\n')
}

export { median, summarize }
