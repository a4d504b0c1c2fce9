/**
 * Value rules of the configuration schema: how each kind of value is read from text (env, flags)
 * and checked (integers with ranges, booleans, endpoints, groups, paths, resource limits), plus
 * the "did you mean" helper. A rule throws `Bad`; the loader (config.ts) turns that into a
 * ConfigIssue naming the key and the source.
 */
import { statSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ResourceLimits } from 'node:worker_threads'
import type { Task } from '@peony/protocol'

// ───────────────────────────── public types ─────────────────────────────

/** pino log levels accepted by `logLevel`. */
export const LogLevel = {
  FATAL: 'fatal',
  ERROR: 'error',
  WARN: 'warn',
  INFO: 'info',
  DEBUG: 'debug',
  TRACE: 'trace',
  SILENT: 'silent',
} as const
export type LogLevel = (typeof LogLevel)[keyof typeof LogLevel]

/** Where the players' sessions are stored (the master's storage thread opens it). */
export const StorageDriver = {
  /** LevelDB in a local directory (`storagePath`); one server per directory. */
  LEVELDB: 'leveldb',
  /** Redis (`redisUrl`, keys under `redisPrefix`). */
  REDIS: 'redis',
  /** Memory of the storage thread: lost when the server stops (tests, demos). */
  MEMORY: 'memory',
} as const
export type StorageDriver = (typeof StorageDriver)[keyof typeof StorageDriver]

/** A worker group: `count` worker threads sharing the tasks the router sends to group `id`. */
export interface GroupConfig {
  id: number | string
  count: number
}

/** Picks the group of a task; runs in the master for every task (keep it cheap and pure). */
export type GroupRouter = (task: Task) => number | string

/** `resourceLimits` of each worker thread (see node:worker_threads). */
export type WorkerResourceLimits = Pick<ResourceLimits, 'maxOldGenerationSizeMb' | 'maxYoungGenerationSizeMb' | 'codeRangeSizeMb' | 'stackSizeMb'>

// ───────────────────────────── rules ─────────────────────────────

/** Context of a check: the folder relative paths resolve against. */
export interface Ctx {
  /** Folder that relative paths resolve against. */
  baseDir: string
}

/** A validation failure inside a rule; the loader turns it into a ConfigIssue. */
export class Bad {
  readonly expected: string
  readonly path: string | undefined
  readonly suggestion: string | undefined
  readonly received: unknown
  readonly hasReceived: boolean
  constructor(expected: string, opts: { path?: string; suggestion?: string | undefined; received?: unknown } = {}) {
    this.expected = expected
    this.path = opts.path
    this.suggestion = opts.suggestion
    this.hasReceived = 'received' in opts
    this.received = opts.received
  }
}

/** How one kind of value is read from text and checked. */
export interface Rule {
  /** What a valid value looks like, for messages and help. */
  expected: string
  /** Text (env/flag) → value; absent when the key cannot be set from text. */
  text?: (raw: string) => unknown
  /** Value → normalized value; throws Bad. */
  check: (value: unknown, ctx: Ctx) => unknown
}

/** Largest delay setTimeout honours. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** True for `{…}` object literals (not arrays, class instances or null). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v) as unknown
  return proto === Object.prototype || proto === null
}

/** An integer in [min, max]; text may use `_` separators (`10_000`). */
export function intRule(min: number, max: number, unit = ''): Rule {
  const u = unit === '' ? '' : ` (${unit})`
  const expected = max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}${u}` : `an integer from ${min} to ${max}${u}`
  return {
    expected,
    text: (raw) => {
      const t = raw.trim()
      if (!/^[+-]?\d+(?:_\d+)*$/.test(t)) throw new Bad(expected)
      return Number(t.replaceAll('_', ''))
    },
    check: (v) => {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new Bad(expected)
      return v
    },
  }
}

/** A boolean; text accepts true/false, 1/0, yes/no, on/off. */
export const boolRule: Rule = {
  expected: 'a boolean (true/false; in env and flags also 1/0, yes/no, on/off)',
  text: (raw) => {
    const t = raw.trim().toLowerCase()
    if (['true', '1', 'yes', 'on'].includes(t)) return true
    if (['false', '0', 'no', 'off'].includes(t)) return false
    throw new Bad(boolRule.expected)
  },
  check: (v) => {
    if (typeof v !== 'boolean') throw new Bad(boolRule.expected)
    return v
  },
}

const SERVER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
/** A server id: 1–64 of A–Z a–z 0–9 . _ -, starting with a letter or digit. */
export const serverIdRule: Rule = {
  expected: '1–64 characters of A–Z a–z 0–9 . _ -, starting with a letter or digit',
  text: (raw) => raw.trim(),
  check: (v) => {
    if (typeof v !== 'string' || !SERVER_ID_RE.test(v)) throw new Bad(serverIdRule.expected)
    return v
  },
}

/** The pino level names, as strings. */
export const logLevels = Object.values(LogLevel) as string[]
/** One of the pino levels (text is lower-cased). */
export const logLevelRule: Rule = {
  expected: `one of ${logLevels.join(', ')}`,
  text: (raw) => raw.trim().toLowerCase(),
  check: (v) => {
    if (typeof v !== 'string' || !logLevels.includes(v)) {
      throw new Bad(logLevelRule.expected, { suggestion: typeof v === 'string' ? closest(v, logLevels) : undefined })
    }
    return v
  },
}

/** Resolves a path or file: URL against the context's folder. */
function toPath(v: unknown, ctx: Ctx): string | undefined {
  if (v instanceof URL) return v.protocol === 'file:' ? fileURLToPath(v) : undefined
  if (typeof v !== 'string' || v.trim() === '') return undefined
  if (v.startsWith('file:')) {
    try {
      return fileURLToPath(v)
    } catch {
      return undefined
    }
  }
  return resolve(ctx.baseDir, v)
}

/** The path or file: URL of an existing file, resolved to an absolute path. */
export const appRule: Rule = {
  expected: 'the path (or file: URL) of an existing application module',
  text: (raw) => raw.trim(),
  check: (v, ctx) => {
    const p = toPath(v, ctx)
    if (p === undefined) throw new Bad(appRule.expected)
    let isFile = false
    try {
      isFile = statSync(p).isFile()
    } catch {
      // missing: reported below
    }
    if (!isFile) throw new Bad(`${appRule.expected} (no file at ${p})`)
    return p
  },
}

// Storage ─────────────────────────────────────────────

/** The storage driver names, as strings. */
export const storageDrivers = Object.values(StorageDriver) as string[]
/** One of the storage drivers (text is lower-cased). */
export const storageRule: Rule = {
  expected: `one of ${storageDrivers.join(', ')}`,
  text: (raw) => raw.trim().toLowerCase(),
  check: (v) => {
    if (typeof v !== 'string' || !storageDrivers.includes(v)) {
      throw new Bad(storageRule.expected, { suggestion: typeof v === 'string' ? closest(v, storageDrivers) : undefined })
    }
    return v
  },
}

/** A directory path or file: URL (LevelDB's), resolved to an absolute path; it may not exist yet, but must not be a file. */
export const storagePathRule: Rule = {
  expected: 'the path (or file: URL) of a directory; it is created if missing',
  text: (raw) => raw.trim(),
  check: (v, ctx) => {
    const p = toPath(v, ctx)
    if (p === undefined) throw new Bad(storagePathRule.expected)
    let isFile = false
    try {
      isFile = !statSync(p).isDirectory()
    } catch {
      // missing: created at start
    }
    if (isFile) throw new Bad(`${storagePathRule.expected} (${p} exists and is not a directory)`)
    return p
  },
}

/** `redis://user:secret@host` → `redis://user:***@host`, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/, '$1:***@')
}

/** A Redis URL: `redis://` or `rediss://` (TLS), host required. */
export const redisUrlRule: Rule = {
  expected: 'a redis://[user:password@]host[:port][/db] or rediss:// URL',
  text: (raw) => raw.trim(),
  check: (v) => {
    if (typeof v !== 'string') throw new Bad(redisUrlRule.expected)
    const received = redactUrl(v)
    let url: URL
    try {
      url = new URL(v)
    } catch {
      throw new Bad(redisUrlRule.expected, { received })
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new Bad(`${redisUrlRule.expected}; the scheme ${url.protocol}// is not supported`, { received })
    if (url.hostname === '') throw new Bad(`${redisUrlRule.expected}; the host is missing`, { received })
    if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d+$/.test(url.pathname)) throw new Bad(`${redisUrlRule.expected}; the path is a database number`, { received })
    return v
  },
}

/** Prefix of every Redis key: up to 256 characters, no NUL (may be empty in a file). */
export const redisPrefixRule: Rule = {
  expected: 'a string of at most 256 characters without NUL (empty: no prefix)',
  text: (raw) => raw.trim(),
  check: (v) => {
    if (typeof v !== 'string' || v.length > 256 || v.includes('\0')) throw new Bad(redisPrefixRule.expected)
    return v
  },
}

// Endpoints ───────────────────────────────────────────

/** Whether an endpoint is bound (intake) or connected to (forwarder). */
export type EndpointMode = 'bind' | 'connect'

/** A normalized endpoint and whether it only reaches this machine. */
export interface ParsedEndpoint {
  endpoint: string
  loopback: boolean
}

const HOSTNAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/
/** sun_path is 108 bytes on Linux, including the terminating NUL. */
const IPC_PATH_MAX_BYTES = 107

function endpointExpected(mode: EndpointMode): string {
  return mode === 'bind'
    ? 'tcp://<ip, interface or *>:<port or *> or ipc://<path>'
    : 'tcp://<host>:<port> or ipc://<path>'
}

/** Parses and normalizes one ZeroMQ endpoint; throws Bad. */
export function parseEndpoint(raw: unknown, mode: EndpointMode, ctx: Ctx): ParsedEndpoint {
  const expected = endpointExpected(mode)
  if (typeof raw !== 'string') throw new Bad(`${expected} (a string)`)
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(raw.trim())
  if (m === null) throw new Bad(expected, { received: raw })
  const scheme = m[1]!.toLowerCase()
  const rest = m[2]!
  if (scheme === 'ipc') {
    if (rest === '') throw new Bad(`${expected}: the ipc path is empty`, { received: raw })
    const path = rest.startsWith('@') ? rest : resolve(ctx.baseDir, rest)
    if (Buffer.byteLength(path) > IPC_PATH_MAX_BYTES) {
      throw new Bad(`an ipc path of at most ${IPC_PATH_MAX_BYTES} bytes (got ${Buffer.byteLength(path)} after resolving to ${path})`, { received: raw })
    }
    return { endpoint: `ipc://${path}`, loopback: true }
  }
  if (scheme === 'inproc') throw new Bad(`${expected}; inproc:// only reaches sockets inside this process`, { received: raw })
  if (scheme !== 'tcp') throw new Bad(`${expected}; the scheme ${scheme}:// is not supported`, { received: raw })
  let host: string
  let port: string
  const v6 = /^\[([0-9A-Fa-f:.]+)\]:([^:]*)$/.exec(rest)
  const v4 = /^([^:[\]/]+):([^:]*)$/.exec(rest)
  if (v6 !== null && v6[1]!.includes(':')) {
    host = v6[1]!
    port = v6[2]!
  } else if (v4 !== null) {
    host = v4[1]!
    port = v4[2]!
  } else {
    throw new Bad(expected, { received: raw })
  }
  if (port === '*') {
    if (mode === 'connect') throw new Bad(`${expected}; a connect endpoint needs a port number`, { received: raw })
  } else if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new Bad(`${expected}; the port is 1–65535${mode === 'bind' ? ' or * (any free port)' : ''}`, { received: raw })
  }
  const ipv4 = IPV4_RE.exec(host)
  if (host === '*') {
    if (mode === 'connect') throw new Bad(`${expected}; * only makes sense when binding`, { received: raw })
  } else if (ipv4 !== null) {
    if (ipv4.slice(1).some((o) => Number(o) > 255)) throw new Bad(`${expected}; ${host} is not an IPv4 address`, { received: raw })
  } else if (!v6 && !HOSTNAME_RE.test(host)) {
    throw new Bad(`${expected}; ${host} is not a host name`, { received: raw })
  }
  const h = host.toLowerCase()
  const loopback = h === 'localhost' || h === 'lo' || h === '::1' || (ipv4 !== null && ipv4[1] === '127')
  const hostPart = v6 !== null ? `[${host}]` : host
  return { endpoint: `tcp://${hostPart}:${port}`, loopback }
}

/** One endpoint to bind or connect. */
export function endpointRule(mode: EndpointMode): Rule {
  return {
    expected: endpointExpected(mode),
    text: (raw) => raw.trim(),
    check: (v, ctx) => parseEndpoint(v, mode, ctx).endpoint,
  }
}

/** The intake endpoints: a non-empty list of distinct bind endpoints (comma-separated in text). */
export const intakeRule: Rule = {
  expected: `a non-empty list of ${endpointExpected('bind')}`,
  text: (raw) =>
    raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  check: (v, ctx) => {
    if (typeof v === 'string') v = [v]
    if (!Array.isArray(v) || v.length === 0) throw new Bad(intakeRule.expected)
    const out: string[] = []
    for (let i = 0; i < v.length; i++) {
      try {
        const { endpoint } = parseEndpoint(v[i], 'bind', ctx)
        if (out.includes(endpoint)) throw new Bad(`distinct endpoints (${endpoint} is listed twice)`, { path: `[${i}]` })
        out.push(endpoint)
      } catch (err) {
        if (err instanceof Bad && err.path === undefined) {
          throw new Bad(err.expected, { path: `[${i}]`, received: err.hasReceived ? err.received : v[i] })
        }
        throw err
      }
    }
    return out
  },
}

// Groups ──────────────────────────────────────────────

/** Most worker threads a server runs in all. */
export const MAX_WORKERS = 1024
const GROUP_ID_STR_RE = /^[A-Za-z0-9._-]{1,64}$/

/** Worker groups: JSON, or `id:count,…` in text. */
export const groupsRule: Rule = {
  expected: 'a non-empty array of { id: integer or name, count: integer ≥ 1 } (in env/flags: JSON, or id:count,… as 1:2,2:1)',
  text: (raw) => {
    const t = raw.trim()
    if (t.startsWith('[') || t.startsWith('{')) {
      try {
        return JSON.parse(t) as unknown
      } catch (err) {
        throw new Bad(`${groupsRule.expected}; JSON.parse: ${(err as Error).message}`)
      }
    }
    return t.split(',').map((part, i) => {
      const m = /^\s*([^:\s]+)\s*:\s*(\S+)\s*$/.exec(part)
      if (m === null) throw new Bad(groupsRule.expected, { path: `[${i}]`, received: part.trim() })
      const id = /^-?\d+$/.test(m[1]!) ? Number(m[1]) : m[1]!
      const count = /^\d+$/.test(m[2]!) ? Number(m[2]) : m[2]!
      return { id, count }
    })
  },
  check: (v) => {
    if (!Array.isArray(v) || v.length === 0) throw new Bad(groupsRule.expected)
    const seen = new Map<string, number>()
    const out: GroupConfig[] = []
    let total = 0
    v.forEach((g: unknown, i) => {
      const path = `[${i}]`
      if (!isPlainObject(g)) throw new Bad('an object { id, count }', { path, received: g })
      for (const k of Object.keys(g)) {
        if (k !== 'id' && k !== 'count') throw new Bad('only the keys id and count', { path: `${path}.${k}`, suggestion: closest(k, ['id', 'count']), received: g[k] })
      }
      const { id, count } = g
      const idOk = (typeof id === 'number' && Number.isSafeInteger(id)) || (typeof id === 'string' && GROUP_ID_STR_RE.test(id))
      if (!idOk) throw new Bad('an integer, or a name of 1–64 characters A–Z a–z 0–9 . _ -', { path: `${path}.id`, received: id })
      if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1 || count > MAX_WORKERS) {
        throw new Bad(`an integer from 1 to ${MAX_WORKERS}`, { path: `${path}.count`, received: count })
      }
      const key = String(id)
      const prev = seen.get(key)
      if (prev !== undefined) throw new Bad(`distinct ids (the same as groups[${prev}].id; 1 and "1" are the same group)`, { path: `${path}.id`, received: id })
      seen.set(key, i)
      total += count
      out.push({ id: id as number | string, count })
    })
    if (total > MAX_WORKERS) throw new Bad(`at most ${MAX_WORKERS} workers in all (got ${total})`)
    return out
  },
}

/** The `workers` shorthand: one group of n. */
export const workersRule: Rule = {
  ...intRule(1, MAX_WORKERS),
  expected: `an integer from 1 to ${MAX_WORKERS}: one group (id 1) of that many workers`,
}

/** The group router: a function, so config modules only. */
export const routerRule: Rule = {
  expected: 'a function (task) => group id, set in a .js/.mjs/.ts config file',
  check: (v) => {
    if (typeof v !== 'function') throw new Bad(routerRule.expected)
    return v
  },
}

const resourceLimitKeys = ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'] as const
/** Worker thread resource limits (JSON in text). */
export const resourceLimitsRule: Rule = {
  expected: `an object with any of ${resourceLimitKeys.join(', ')} (positive numbers; in env/flags as JSON)`,
  text: (raw) => {
    try {
      return JSON.parse(raw) as unknown
    } catch (err) {
      throw new Bad(`${resourceLimitsRule.expected}; JSON.parse: ${(err as Error).message}`)
    }
  },
  check: (v) => {
    if (!isPlainObject(v)) throw new Bad(resourceLimitsRule.expected)
    const out: WorkerResourceLimits = {}
    for (const [k, n] of Object.entries(v)) {
      if (!(resourceLimitKeys as readonly string[]).includes(k)) {
        throw new Bad(`only the keys ${resourceLimitKeys.join(', ')}`, { path: `.${k}`, suggestion: closest(k, resourceLimitKeys), received: n })
      }
      if (n === undefined) continue
      if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0 || n > 1_048_576) {
        throw new Bad('a number of MB, > 0 and ≤ 1048576', { path: `.${k}`, received: n })
      }
      out[k as (typeof resourceLimitKeys)[number]] = n
    }
    return out
  },
}

// ───────────────────────────── suggestions ─────────────────────────────

function levenshtein(a: string, b: string): number {
  if (a === b) return 0
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length]!
}

const norm = (s: string): string => s.toLowerCase().replace(/[-_\s]/g, '')

/** The candidate closest to `name` (ignoring case, `-` and `_`), when close enough to be a typo. */
export function closest(name: string, candidates: readonly string[], strip = ''): string | undefined {
  const n = norm(name).slice(strip.length && norm(name).startsWith(strip) ? strip.length : 0)
  let best: string | undefined
  let bestD = Infinity
  for (const c of candidates) {
    const cn = norm(c).slice(strip.length && norm(c).startsWith(strip) ? strip.length : 0)
    // A prefix ("warning" for "warn") counts as close; otherwise the edit distance.
    const d = Math.min(n.length, cn.length) >= 3 && (n.startsWith(cn) || cn.startsWith(n)) ? 0.5 : levenshtein(n, cn)
    if (d < bestD) {
      best = c
      bestD = d
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(n.length / 4)))
  return bestD <= limit ? best : undefined
}

/** Shortened printable form of a value. */
export function show(v: unknown): string {
  if (typeof v === 'function') return 'a function'
  if (v === undefined) return 'nothing'
  if (typeof v === 'bigint') return `${v}n`
  let s: string
  try {
    s = JSON.stringify(v) ?? String(v)
  } catch {
    s = Object.prototype.toString.call(v)
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

