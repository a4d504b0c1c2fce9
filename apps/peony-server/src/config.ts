/**
 * The server's configuration: the schema (one table, `configKeys`, that also drives `--help` and
 * the README), and the loader that merges four sources, later wins:
 *
 *   defaults ← config file ← environment (`PEONY_*`) ← command-line flags
 *
 * The config file is `--config <path>`, else `PEONY_CONFIG`, else the first of
 * `peony.config.{json,ts,mts,mjs,js}` found in the working directory (more than one found is an
 * error). JSON holds plain values; a module's default export is the object, or a function (maybe
 * async) of `{ env, cwd }` returning it, so a `router` function can live there.
 *
 * Every value is validated by hand (no schema library). Problems are collected, not thrown one by
 * one: `loadConfig` rejects with one `ConfigError` (`PEONY_CONFIG_INVALID`) listing each problem
 * with its key, its source (file/env/flag) and what was expected. Unknown keys and flags are
 * errors, with a "did you mean" when a known name is close. Unknown `PEONY_*` variables are errors
 * when close to a known one, and otherwise only warnings (`config.warnings`): the environment is
 * shared with other tools that use the same prefix (`PEONY_INTEGRATION` in CI, say).
 *
 * Paths (`app`, `storagePath`, `ipc://` endpoints) given in a file resolve against the file's
 * folder; given in the environment or flags (or by default), against the working directory.
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { hostname } from 'node:os'
import { basename, dirname, extname, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Defaults } from '@peony/broker-client/core'
import {
  appRule,
  Bad,
  boolRule,
  closest,
  endpointRule,
  groupsRule,
  intakeRule,
  intRule,
  isPlainObject,
  LogLevel,
  logLevelRule,
  logLevels,
  MAX_TIMER_MS,
  parseEndpoint,
  redactUrl,
  redisPrefixRule,
  redisUrlRule,
  resourceLimitsRule,
  routerRule,
  serverIdRule,
  show,
  StorageDriver,
  storagePathRule,
  storageRule,
  workersRule,
  type Ctx,
  type GroupConfig,
  type GroupRouter,
  type Rule,
  type WorkerResourceLimits,
} from './config-rules.ts'
import { ConfigError, type ConfigIssue, type ConfigSource } from './errors.ts'

export { LogLevel, StorageDriver } from './config-rules.ts'
export type { GroupConfig, GroupRouter, WorkerResourceLimits } from './config-rules.ts'

/** The resolved configuration: every key has its final value (see the README table for each). */
export interface ServerConfig {
  serverId: string
  /** Absolute path of the application module. */
  app: string
  intakeEndpoints: string[]
  allowNonLoopback: boolean
  forwarderEndpoint: string
  egressAck: boolean
  egressBufferMax: number
  groups: GroupConfig[]
  router: GroupRouter | undefined
  queueMaxSize: number
  maxQueueWaitMs: number
  claimedMaxSize: number
  laneMaxInFlight: number
  laneKeepIdle: number
  shards: number
  maxFrameBytes: number
  workTimeoutMs: number
  /** Undefined: the master's default, max(workTimeoutMs, 5000). */
  blockedTimeoutMs: number | undefined
  stopTimeoutMs: number
  workerCloseTimeoutMs: number
  respawnMinDelayMs: number
  spareWorkers: number
  respawnMaxDelayMs: number
  workerResourceLimits: WorkerResourceLimits | undefined
  storage: StorageDriver
  /** Absolute path of the LevelDB directory (used when `storage` is leveldb). */
  storagePath: string
  /** LevelDB's cache of fence generations, in entries (used when `storage` is leveldb). */
  fenceCacheSize: number
  /** Used when `storage` is redis. */
  redisUrl: string
  redisPrefix: string
  flushIntervalMs: number
  gateIntervalMs: number
  maxUnflushedAgeMs: number
  flushBatchSize: number
  sessionLoadTimeoutMs: number
  sessionIdleTimeoutMs: number
  sessionCloseGraceMs: number
  /** MiB; 0 = no limit. */
  sessionMemoryBudgetMb: number
  /** 0 = no limit. */
  maxSessions: number
  logLevel: LogLevel
  /** Absolute path of the config file that was read, if any. */
  configFile: string | undefined
  /** Where each key's value came from. */
  sources: Record<ResolvedKey, ConfigSource>
  /** Notes worth logging at start (ignored environment variables, idle groups). */
  warnings: string[]
}

/** Keys of ServerConfig that come from the schema. */
export type ResolvedKey = Exclude<ConfigKey, 'workers'>

/** What `loadConfig` reads. Each field defaults to the current process's. */
export interface LoadConfigInput {
  /** Command-line arguments without `node` and the script (`process.argv.slice(2)`). */
  argv?: readonly string[] | undefined
  env?: Readonly<Record<string, string | undefined>> | undefined
  cwd?: string | undefined
}

// ───────────────────────────── the schema ─────────────────────────────

interface KeySpecInput {
  rule: Rule
  /** Default value; a function is called per load. Absent: the key is required (or optional when `optional`). */
  default?: unknown
  /** The default goes through `rule.check` against the working directory (a relative default path). */
  checkDefault?: boolean
  optional?: boolean
  /** Default as documented (help, README). */
  defaultText: string
  /** Settable from the environment (needs `rule.text`). */
  env?: boolean
  /** Flag names without `--`; the first is canonical. Default: the key in kebab case, when `rule.text` exists. */
  flags?: string[]
  /** The flag may repeat; values accumulate. */
  repeatable?: boolean
  /** A boolean flag: `--x` means true, `--no-x` false. */
  boolean?: boolean
  /** Placeholder in `--help`. */
  arg?: string
  /** One line: what it means. The original's key, when there is one, in `(was …)`. */
  doc: string
}

function defaultServerId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
  return `peony-${host}`.slice(0, 64)
}

/**
 * The configuration schema, in help order. Each key's environment variable is `PEONY_` + the key
 * in SCREAMING_SNAKE case; its flag is `--` + the key in kebab case (plus aliases).
 */
const specTable = {
  serverId: {
    rule: serverIdRule,
    default: defaultServerId,
    defaultText: 'peony-<hostname>',
    arg: '<id>',
    doc: 'This server\'s id: brokers choose servers by it (protocol §1.3) and egress senders are named after it. Set it explicitly when several servers run or when host names are not stable (containers). (was NAME)',
  },
  app: {
    rule: appRule,
    defaultText: '(required; peony.config.json here sets the idle-rpg example)',
    arg: '<path>',
    doc: 'The application module (default export: the app from createApp()), loaded in every worker thread.',
  },
  intakeEndpoints: {
    rule: intakeRule,
    default: () => [Defaults.INTAKE_ENDPOINT],
    defaultText: Defaults.INTAKE_ENDPOINT,
    flags: ['intake', 'intake-endpoints'],
    repeatable: true,
    arg: '<endpoint>',
    doc: 'Intake ROUTER endpoints that brokers connect to (comma-separated in env; repeat the flag). (was HOST/PORT)',
  },
  allowNonLoopback: {
    rule: boolRule,
    default: false,
    defaultText: 'false',
    boolean: true,
    doc: 'Required to bind intake on a non-loopback interface: ZeroMQ intake has no authentication, so exposing it is a deliberate choice.',
  },
  forwarderEndpoint: {
    rule: endpointRule('connect'),
    default: Defaults.EGRESS_ENDPOINT,
    defaultText: Defaults.EGRESS_ENDPOINT,
    flags: ['forwarder', 'forwarder-endpoint'],
    arg: '<endpoint>',
    doc: 'The forwarder\'s ROUTER endpoint that egress connects to (any host).',
  },
  egressAck: {
    rule: boolRule,
    default: false,
    defaultText: 'false',
    boolean: true,
    doc: 'Add sender/seq to egress and re-send what the forwarder has not acknowledged after a reconnect (protocol §2).',
  },
  egressBufferMax: {
    rule: intRule(1, Number.MAX_SAFE_INTEGER, 'messages'),
    default: 100_000,
    defaultText: '100000',
    arg: '<n>',
    doc: 'Messages kept per egress sender while the forwarder is away; overflow is dropped and counted.',
  },
  groups: {
    rule: groupsRule,
    default: () => [{ id: 1, count: 2 }],
    defaultText: '1:2 (one group, id 1, of 2 workers)',
    arg: '<groups>',
    doc: 'Worker groups, as JSON or id:count,… (was GROUP_LIST).',
  },
  workers: {
    rule: workersRule,
    optional: true,
    defaultText: '—',
    arg: '<n>',
    doc: 'Shorthand for groups = one group (id 1) of n workers. Not together with groups in the same source.',
  },
  router: {
    rule: routerRule,
    optional: true,
    defaultText: 'every task to the first group',
    doc: 'Function (task) => group id, run in the master for every task; config module only (was GROUP_ROUTER).',
  },
  queueMaxSize: {
    rule: intRule(1, Number.MAX_SAFE_INTEGER, 'tasks'),
    default: 10_000,
    defaultText: '10000',
    arg: '<n>',
    doc: 'Tasks queued in the master per worker; beyond it client requests are refused with -10002 (was TASK_QUEUE_MAX_SIZE, where ≤ 0 meant unbounded: not supported).',
  },
  maxQueueWaitMs: {
    rule: intRule(0, 3_600_000, 'ms'),
    default: 1_000,
    defaultText: '1000',
    arg: '<ms>',
    doc: 'A client request (cmd 10) that waited longer than this in the master is answered -10002 instead of started late; 0 turns it off.',
  },
  claimedMaxSize: {
    rule: intRule(1, Number.MAX_SAFE_INTEGER, 'tasks'),
    default: 1024,
    defaultText: '1024',
    arg: '<n>',
    doc: 'Tasks dispatched to one worker and not yet finished, at most (was TASK_CLAIMED_MAX_SIZE).',
  },
  laneMaxInFlight: {
    rule: intRule(1, 65_536, 'tasks'),
    default: 4,
    defaultText: '4',
    arg: '<n>',
    doc: 'Tasks of one routing key dispatched to its worker at a time (they still run one by one there); ≤ claimedMaxSize.',
  },
  laneKeepIdle: {
    rule: intRule(0, 16_777_216, 'lanes'),
    default: 8192,
    defaultText: '8192',
    arg: '<n>',
    doc: 'Idle lanes (players with nothing queued or running) the master keeps per worker for reuse, ~100 B each; past it the one idle longest is deleted. Bounds what the master keeps for players who have left. 0: none.',
  },
  shards: {
    rule: intRule(1, 65_536),
    default: 256,
    defaultText: '256',
    arg: '<n>',
    doc: 'Fixed number of shards between routing keys and workers; ≥ the number of workers. Changing it moves players between workers.',
  },
  maxFrameBytes: {
    rule: intRule(1024, 256 * 1024 * 1024, 'bytes'),
    default: Defaults.MAX_FRAME_BYTES,
    defaultText: String(Defaults.MAX_FRAME_BYTES),
    arg: '<bytes>',
    doc: 'Largest intake frame accepted, checked before decoding; larger frames are rejected and counted.',
  },
  workTimeoutMs: {
    rule: intRule(0, MAX_TIMER_MS, 'ms'),
    default: 30_000,
    defaultText: '30000',
    arg: '<ms>',
    doc: 'Per-handler deadline; past it the client gets -10001. 0 disables it (was WORK_TIMEOUT, in seconds).',
  },
  blockedTimeoutMs: {
    rule: intRule(100, MAX_TIMER_MS, 'ms'),
    optional: true,
    defaultText: 'max(workTimeoutMs, 5000)',
    arg: '<ms>',
    doc: 'A worker whose event loop has not turned for this long while it holds tasks is terminated and respawned.',
  },
  stopTimeoutMs: {
    rule: intRule(0, MAX_TIMER_MS, 'ms'),
    default: 30_000,
    defaultText: '30000',
    arg: '<ms>',
    doc: 'Whole graceful-stop budget after SIGTERM/SIGINT (was STOP_TIMEOUT, in seconds). Keep the orchestrator\'s grace period above it.',
  },
  workerCloseTimeoutMs: {
    rule: intRule(0, MAX_TIMER_MS, 'ms'),
    default: 10_000,
    defaultText: '10000',
    arg: '<ms>',
    doc: 'Part of the stop budget given to workers to run their stop hooks and flush; ≤ stopTimeoutMs (the master uses at most half the stop budget for it).',
  },
  spareWorkers: {
    rule: intRule(0, 1),
    default: 1,
    defaultText: '1',
    arg: '<0|1>',
    doc: 'Loaded spare worker threads kept to replace a worker that dies at once (a respawn then costs no thread start); 0 turns it off.',
  },
  respawnMinDelayMs: {
    rule: intRule(0, MAX_TIMER_MS, 'ms'),
    default: 50,
    defaultText: '50',
    arg: '<ms>',
    doc: 'Respawn delay of a crash-looping worker (a first crash respawns at once; the delay then doubles up to respawnMaxDelayMs).',
  },
  respawnMaxDelayMs: {
    rule: intRule(0, MAX_TIMER_MS, 'ms'),
    default: 10_000,
    defaultText: '10000',
    arg: '<ms>',
    doc: 'Largest respawn delay; ≥ respawnMinDelayMs.',
  },
  workerResourceLimits: {
    rule: resourceLimitsRule,
    optional: true,
    defaultText: 'Node\'s defaults',
    arg: '<json>',
    doc: 'resourceLimits of each worker thread, e.g. {"maxOldGenerationSizeMb":512}.',
  },
  storage: {
    rule: storageRule,
    default: StorageDriver.LEVELDB,
    defaultText: 'leveldb',
    arg: '<driver>',
    doc: `Where the players' sessions are stored: ${Object.values(StorageDriver).join(', ')} (memory is lost when the server stops). The master's storage thread opens it; a failure to open stops the start.`,
  },
  storagePath: {
    rule: storagePathRule,
    default: './data/peony',
    checkDefault: true,
    defaultText: './data/peony (in the working directory)',
    arg: '<dir>',
    doc: 'The LevelDB directory (storage leveldb); its parent is created if missing. One server per directory: a second one fails with PEONY_STORAGE_LOCKED.',
  },
  fenceCacheSize: {
    rule: intRule(1, 1 << 30, 'fences'),
    default: 100_000,
    defaultText: '100000',
    arg: '<n>',
    doc: 'Fence generations the LevelDB storage keeps cached (storage leveldb), ~150 B each; past it the least recently used one (claimed or written) is dropped and read from disk again when its player comes back. Bounds what the storage thread keeps for players who have left.',
  },
  redisUrl: {
    rule: redisUrlRule,
    default: 'redis://127.0.0.1:6379',
    defaultText: 'redis://127.0.0.1:6379',
    arg: '<url>',
    doc: 'The Redis server (storage redis): redis://[user:password@]host[:port][/db], or rediss:// for TLS.',
  },
  redisPrefix: {
    rule: redisPrefixRule,
    default: 'peony:',
    defaultText: 'peony:',
    arg: '<prefix>',
    doc: 'Prefix of every Redis key (storage redis); servers that must not see each other\'s players use different prefixes.',
  },
  flushIntervalMs: {
    rule: intRule(1, MAX_TIMER_MS, 'ms'),
    default: 1000,
    defaultText: '1000',
    arg: '<ms>',
    doc: 'Period of the sessions\' write-behind tick, which also checks evictions.',
  },
  gateIntervalMs: {
    rule: intRule(0, 1_000, 'ms'),
    default: 2,
    defaultText: '2',
    arg: '<ms>',
    doc: 'Group commit of the output gate: gated changes collected this long are written in one batch before their replies leave; 0 = at the end of the turn.',
  },
  maxUnflushedAgeMs: {
    rule: intRule(1, MAX_TIMER_MS, 'ms'),
    default: 5000,
    defaultText: '5000',
    arg: '<ms>',
    doc: 'A changed session is written within this long while storage answers (what a crash can lose); ≥ flushIntervalMs.',
  },
  flushBatchSize: {
    rule: intRule(1, 100_000, 'sessions'),
    default: 500,
    defaultText: '500',
    arg: '<n>',
    doc: 'Sessions written per storage call of the write-behind.',
  },
  sessionLoadTimeoutMs: {
    rule: intRule(0, MAX_TIMER_MS, 'ms'),
    default: 5000,
    defaultText: '5000',
    arg: '<ms>',
    doc: 'Deadline of loading one session; past it the player\'s waiting requests get -10005. 0 disables it.',
  },
  sessionIdleTimeoutMs: {
    rule: intRule(0, MAX_TIMER_MS, 'ms'),
    default: 900_000,
    defaultText: '900000 (15 min)',
    arg: '<ms>',
    doc: 'A session without requests or timers for this long is written and dropped from memory. 0: never.',
  },
  sessionCloseGraceMs: {
    rule: intRule(0, MAX_TIMER_MS, 'ms'),
    default: 60_000,
    defaultText: '60000',
    arg: '<ms>',
    doc: 'A session is written and dropped from memory this long after its client closed (task cmd 20), unless a request comes first.',
  },
  sessionMemoryBudgetMb: {
    rule: intRule(0, 1_048_576, 'MiB'),
    default: 256,
    defaultText: '256',
    arg: '<MiB>',
    doc: 'Estimated session state per worker above which the least recently used sessions are written and dropped. 0: no limit.',
  },
  maxSessions: {
    rule: intRule(0, Number.MAX_SAFE_INTEGER, 'sessions'),
    default: 0,
    defaultText: '0 (no limit)',
    arg: '<n>',
    doc: 'Sessions resident per worker above which the least recently used ones are written and dropped. 0: no limit.',
  },
  logLevel: {
    rule: logLevelRule,
    default: LogLevel.INFO,
    defaultText: 'info',
    arg: '<level>',
    doc: `pino log level: ${logLevels.join(', ')}.`,
  },
} satisfies Record<string, KeySpecInput>

/** A key of the configuration schema (including the `workers` shorthand). */
export type ConfigKey = keyof typeof specTable

/** One documented configuration key. */
export interface ConfigKeyInfo {
  key: ConfigKey
  /** Environment variable, or undefined when the key is set in a config module only. */
  env: string | undefined
  /** Flags (with `--`), canonical first; empty when not settable by flag. */
  flags: string[]
  /** Default as documented. */
  default: string
  /** What a valid value looks like. */
  expected: string
  doc: string
}

interface KeySpec extends KeySpecInput {
  key: ConfigKey
  envName: string | undefined
  flagNames: string[]
}

const toSnake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()
const toKebab = (k: string): string => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

const specs: KeySpec[] = (Object.entries(specTable) as [ConfigKey, KeySpecInput][]).map(([key, s]) => {
  const textual = s.rule.text !== undefined
  return {
    ...s,
    key,
    envName: textual && s.env !== false ? `PEONY_${toSnake(key)}` : undefined,
    flagNames: textual ? (s.flags ?? [toKebab(key)]) : [],
  }
})
const specByKey = new Map(specs.map((s) => [s.key, s]))
const specByEnv = new Map(specs.filter((s) => s.envName !== undefined).map((s) => [s.envName!, s]))
const specByFlag = new Map(specs.flatMap((s) => s.flagNames.map((f) => [f, s] as const)))
/** Keys that only a config module can set (router), by the flag and env names one would try. */
const fileOnly = new Map(specs.filter((s) => s.rule.text === undefined).map((s) => [toKebab(s.key), s]))
const fileOnlyEnv = new Map(specs.filter((s) => s.rule.text === undefined).map((s) => [`PEONY_${toSnake(s.key)}`, s]))

/** Environment variable naming the config file. */
export const CONFIG_ENV = 'PEONY_CONFIG'
/** Files looked for in the working directory when neither `--config` nor PEONY_CONFIG is given. */
export const CONFIG_FILE_NAMES = ['peony.config.json', 'peony.config.ts', 'peony.config.mts', 'peony.config.mjs', 'peony.config.js'] as const

/** Names of the original (Python) configuration, mapped to ours for "did you mean". */
const ORIGINAL_NAMES: Record<string, ConfigKey> = {
  NAME: 'serverId',
  HOST: 'intakeEndpoints',
  PORT: 'intakeEndpoints',
  GROUP_LIST: 'groups',
  GROUP_ROUTER: 'router',
  TASK_QUEUE_MAX_SIZE: 'queueMaxSize',
  TASK_CLAIMED_MAX_SIZE: 'claimedMaxSize',
  STOP_TIMEOUT: 'stopTimeoutMs',
  WORK_TIMEOUT: 'workTimeoutMs',
}

/** Every configuration key with its environment variable, flags, default and meaning (drives --help and the README). */
export function describeConfigKeys(): ConfigKeyInfo[] {
  return specs.map((s) => ({
    key: s.key,
    env: s.envName,
    flags: s.flagNames.map((f) => `--${f}`),
    default: s.defaultText,
    expected: s.rule.expected,
    doc: s.doc,
  }))
}

// ───────────────────────────── the loader ─────────────────────────────

interface Entry {
  value: unknown
  source: ConfigSource
  origin: string
}

type Layer = Map<ConfigKey, Entry>

class Collector {
  readonly issues: ConfigIssue[] = []
  readonly warnings: string[] = []

  add(i: Omit<ConfigIssue, 'message'> & { path?: string | undefined }): void {
    const where = `${i.key}${i.path ?? ''} (${i.origin})`
    let message = `${where}: expected ${i.expected}`
    if (i.received !== undefined) message += `, got ${i.received}`
    if (i.suggestion !== undefined) message += `; did you mean "${i.suggestion}"?`
    const { path: _path, ...rest } = i
    this.issues.push({ ...rest, message })
  }

  unknown(name: string, source: ConfigSource, origin: string, suggestion: string | undefined, what: string): void {
    let message = `unknown ${what} "${name}" (${origin})`
    if (suggestion !== undefined) message += `; did you mean "${suggestion}"?`
    else message += '; run with --help for the list'
    this.issues.push({ key: name, source, origin, expected: `a known ${what}`, suggestion, message })
  }

  positional(arg: string): void {
    this.issues.push({
      key: arg,
      source: 'flag',
      origin: 'command line',
      expected: 'options of the form --name value or --name=value',
      message: `unexpected argument ${JSON.stringify(arg)} on the command line: options start with -- (run with --help for the list)`,
    })
  }

  bad(err: unknown, key: string, source: ConfigSource, origin: string, value: unknown): void {
    if (!(err instanceof Bad)) throw err
    this.add({
      key,
      path: err.path,
      source,
      origin,
      expected: err.expected,
      received: show(err.hasReceived ? err.received : value),
      suggestion: err.suggestion,
    })
  }
}

/** Applies a rule, recording a problem instead of throwing. */
function apply(c: Collector, layer: Layer, spec: KeySpec, value: unknown, source: ConfigSource, origin: string, ctx: Ctx, fromText: boolean): void {
  try {
    const typed = fromText ? spec.rule.text!(value as string) : value
    layer.set(spec.key, { value: spec.rule.check(typed, ctx), source, origin })
  } catch (err) {
    c.bad(err, spec.key, source, origin, value)
  }
}

interface ParsedArgv {
  flags: Layer
  config: { path: string; origin: string } | undefined
  help: boolean
}

/** True when the arguments ask for `--help` (`-h`). */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false
    if (a === '--help' || a === '-h') return true
  }
  return false
}

function parseArgv(c: Collector, argv: readonly string[], ctx: Ctx): ParsedArgv {
  const raw = new Map<KeySpec, { values: string[]; origin: string }>()
  let config: ParsedArgv['config']
  const help = wantsHelp(argv)
  const knownFlags = ['config', 'help', ...specByFlag.keys()]
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--') {
      for (const extra of argv.slice(i + 1)) c.positional(extra)
      break
    }
    if (arg === '--help' || arg === '-h') continue
    if (!arg.startsWith('--')) {
      c.positional(arg)
      continue
    }
    const eq = arg.indexOf('=')
    let name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    let inline = eq === -1 ? undefined : arg.slice(eq + 1)
    let spec = specByFlag.get(name)
    if (spec === undefined && name.startsWith('no-') && specByFlag.get(name.slice(3))?.boolean === true) {
      if (inline !== undefined) {
        c.add({ key: specByFlag.get(name.slice(3))!.key, source: 'flag', origin: `flag --${name}`, expected: 'no value after a --no- flag', received: show(inline) })
        continue
      }
      name = name.slice(3)
      spec = specByFlag.get(name)!
      inline = 'false'
    }
    const origin = `flag --${name}`
    if (name === 'config') {
      const v = inline ?? (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--') ? argv[++i] : undefined)
      if (v === undefined || v.trim() === '') c.add({ key: 'config', source: 'flag', origin, expected: 'the path of a config file after --config' })
      else config = { path: resolve(ctx.baseDir, v), origin }
      continue
    }
    if (spec === undefined) {
      // Skip what looks like the unknown flag's value, so it is not reported again as an argument.
      if (inline === undefined && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('-')) i++
      const other = fileOnly.get(name)
      if (other !== undefined) {
        c.add({ key: other.key, source: 'flag', origin, expected: other.rule.expected })
        continue
      }
      const near = closest(name, knownFlags)
      c.unknown(`--${name}`, 'flag', origin, near === undefined ? undefined : `--${near}`, 'flag')
      continue
    }
    let value: string | undefined = inline
    if (value === undefined) {
      if (spec.boolean === true) value = 'true'
      else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) value = argv[++i]
    }
    if (value === undefined) {
      c.add({ key: spec.key, source: 'flag', origin, expected: `a value after --${name} (${spec.rule.expected})` })
      continue
    }
    const prev = raw.get(spec)
    if (prev !== undefined && spec.repeatable === true) prev.values.push(value)
    else raw.set(spec, { values: [value], origin }) // a repeated plain flag: the last one wins
  }
  const flags: Layer = new Map()
  for (const [spec, { values, origin }] of raw) apply(c, flags, spec, values.join(','), 'flag', origin, ctx, true)
  return { flags, config, help }
}

function readEnv(c: Collector, env: Readonly<Record<string, string | undefined>>, ctx: Ctx): Layer {
  const layer: Layer = new Map()
  const known = [CONFIG_ENV, ...specByEnv.keys()]
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('PEONY_') || name === CONFIG_ENV) continue
    const raw = env[name]
    if (raw === undefined || raw.trim() === '') continue // empty counts as unset
    const spec = specByEnv.get(name)
    const origin = `env ${name}`
    const other = fileOnlyEnv.get(name)
    if (other !== undefined) {
      c.add({ key: other.key, source: 'env', origin, expected: other.rule.expected, received: show(raw) })
      continue
    }
    if (spec === undefined) {
      const s = closest(name, known, 'peony')
      if (s !== undefined) c.unknown(name, 'env', origin, s, 'environment variable')
      else c.warnings.push(`ignored environment variable ${name}: not a peony-server setting`)
      continue
    }
    apply(c, layer, spec, raw, 'env', origin, ctx, true)
  }
  return layer
}

async function readFile(c: Collector, file: string, origin: string, env: LoadConfigInput['env'], cwd: string): Promise<unknown> {
  const ext = extname(file).toLowerCase()
  const fail = (expected: string, received?: string): undefined => {
    c.add({ key: 'config', source: 'file', origin, expected, received })
    return undefined
  }
  if (!existsSync(file) || !statSync(file).isFile()) return fail(`an existing config file (no file at ${file})`)
  if (ext === '.json') {
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as unknown
    } catch (err) {
      return fail('a JSON object', `invalid JSON: ${(err as Error).message}`)
    }
  }
  if (!['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts'].includes(ext)) return fail('a .json, .js, .mjs, .ts or .mts config file', show(basename(file)))
  let mod: { default?: unknown }
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown }
  } catch (err) {
    return fail('a config module that loads', `${(err as Error).name}: ${(err as Error).message}`)
  }
  let value = mod.default
  if (typeof value === 'function') {
    try {
      value = await (value as (ctx: ConfigModuleContext) => unknown)({ env: { ...(env ?? {}) }, cwd })
    } catch (err) {
      return fail('a config function that returns an object', `it threw ${(err as Error).name}: ${(err as Error).message}`)
    }
  }
  if (value === undefined) return fail('a default export: the config object, or a function returning it')
  return value
}

/** What a config module's default-exported function receives. */
export interface ConfigModuleContext {
  env: Record<string, string | undefined>
  cwd: string
}

function readFileLayer(c: Collector, obj: unknown, file: string, origin: string): Layer {
  const layer: Layer = new Map()
  if (!isPlainObject(obj)) {
    c.add({ key: 'config', source: 'file', origin, expected: 'an object of configuration keys', received: show(obj) })
    return layer
  }
  const ctx: Ctx = { baseDir: dirname(file) }
  for (const [k, v] of Object.entries(obj)) {
    if (k === '$schema' || k.startsWith('//')) continue // JSON comments
    const spec = specByKey.get(k as ConfigKey)
    if (spec === undefined) {
      c.unknown(k, 'file', `${origin}`, ORIGINAL_NAMES[k] ?? closest(k, [...specByKey.keys()]), 'key')
      continue
    }
    if (v === undefined) continue
    apply(c, layer, spec, v, 'file', origin, ctx, false)
  }
  return layer
}

/** `workers: n` → `groups: [{ id: 1, count: n }]`, within one source. */
function foldWorkers(c: Collector, layer: Layer): void {
  const w = layer.get('workers')
  if (w === undefined) return
  layer.delete('workers')
  const g = layer.get('groups')
  if (g !== undefined) {
    c.add({ key: 'workers', source: w.source, origin: `${w.origin} and ${g.origin}`, expected: 'either groups or workers in one source, not both' })
    return
  }
  layer.set('groups', { value: [{ id: 1, count: w.value as number }], source: w.source, origin: w.origin })
}

function findConfigFile(c: Collector, cwd: string): string | undefined {
  const found = CONFIG_FILE_NAMES.map((n) => resolve(cwd, n)).filter((p) => existsSync(p))
  if (found.length > 1) {
    c.add({ key: 'config', source: 'file', origin: `folder ${cwd}`, expected: 'at most one peony.config.* file', received: found.map((p) => basename(p)).join(', ') })
    return undefined
  }
  return found[0]
}

/**
 * Loads, merges and validates the configuration (see the module comment for sources and rules).
 * Rejects with a ConfigError (`PEONY_CONFIG_INVALID`) listing every problem.
 */
export async function loadConfig(input: LoadConfigInput = {}): Promise<ServerConfig> {
  const argv = input.argv ?? process.argv.slice(2)
  const env = input.env ?? process.env
  const cwd = resolve(input.cwd ?? process.cwd())
  const c = new Collector()
  const textCtx: Ctx = { baseDir: cwd }

  const parsed = parseArgv(c, argv, textCtx)
  const envLayer = readEnv(c, env, textCtx)

  let configFile: string | undefined
  let fileOrigin = ''
  const envConfig = env[CONFIG_ENV]
  if (parsed.config !== undefined) {
    configFile = parsed.config.path
    fileOrigin = `file ${configFile} (from ${parsed.config.origin})`
  } else if (envConfig !== undefined && envConfig.trim() !== '') {
    configFile = resolve(cwd, envConfig)
    fileOrigin = `file ${configFile} (from env ${CONFIG_ENV})`
  } else {
    configFile = findConfigFile(c, cwd)
    fileOrigin = `file ${configFile}`
  }
  let fileLayer: Layer = new Map()
  if (configFile !== undefined) {
    const obj = await readFile(c, configFile, fileOrigin, env, cwd)
    if (obj !== undefined) fileLayer = readFileLayer(c, obj, configFile, fileOrigin)
  }

  const layers = [fileLayer, envLayer, parsed.flags]
  for (const l of layers) foldWorkers(c, l)

  // Merge: later wins.
  const values = new Map<ResolvedKey, Entry>()
  for (const spec of specs) {
    if (spec.key === 'workers') continue
    const key = spec.key
    const entry = parsed.flags.get(key) ?? envLayer.get(key) ?? fileLayer.get(key)
    if (entry !== undefined) {
      values.set(key, entry)
    } else if ('default' in spec) {
      const d = typeof spec.default === 'function' ? (spec.default as () => unknown)() : spec.default
      if (spec.checkDefault === true) apply(c, values as Layer, spec, d, 'default', 'default', textCtx, false)
      else values.set(key, { value: d, source: 'default', origin: 'default' })
    } else if (spec.optional !== true) {
      // Required and absent. Skip when the source that should have set it (or the config file) already failed.
      if (!c.issues.some((i) => i.key === key || i.key === 'config')) {
        c.add({ key, source: 'default', origin: 'not set', expected: `a value: set "${key}" in the config file, ${spec.envName ?? ''} or --${spec.flagNames[0] ?? ''} (${spec.rule.expected})` })
      }
    }
  }

  crossCheck(c, values)
  if (c.issues.length > 0) throw new ConfigError(c.issues)

  const v = <T>(k: ResolvedKey): T => values.get(k)?.value as T
  const groups = v<GroupConfig[]>('groups')
  if (groups.length > 1 && v('router') === undefined) {
    c.warnings.push(`groups ${groups.slice(1).map((g) => String(g.id)).join(', ')} get no tasks: without a router every task goes to group ${String(groups[0]!.id)}`)
  }
  const sources = {} as Record<ResolvedKey, ConfigSource>
  for (const spec of specs) if (spec.key !== 'workers') sources[spec.key] = values.get(spec.key)?.source ?? 'default'

  return {
    serverId: v('serverId'),
    app: v('app'),
    intakeEndpoints: v('intakeEndpoints'),
    allowNonLoopback: v('allowNonLoopback'),
    forwarderEndpoint: v('forwarderEndpoint'),
    egressAck: v('egressAck'),
    egressBufferMax: v('egressBufferMax'),
    groups,
    router: v('router'),
    queueMaxSize: v('queueMaxSize'),
    maxQueueWaitMs: v('maxQueueWaitMs'),
    claimedMaxSize: v('claimedMaxSize'),
    laneMaxInFlight: v('laneMaxInFlight'),
    laneKeepIdle: v('laneKeepIdle'),
    shards: v('shards'),
    maxFrameBytes: v('maxFrameBytes'),
    workTimeoutMs: v('workTimeoutMs'),
    blockedTimeoutMs: v('blockedTimeoutMs'),
    stopTimeoutMs: v('stopTimeoutMs'),
    workerCloseTimeoutMs: v('workerCloseTimeoutMs'),
    respawnMinDelayMs: v('respawnMinDelayMs'),
    spareWorkers: v('spareWorkers'),
    respawnMaxDelayMs: v('respawnMaxDelayMs'),
    workerResourceLimits: v('workerResourceLimits'),
    storage: v('storage'),
    storagePath: v('storagePath'),
    fenceCacheSize: v('fenceCacheSize'),
    redisUrl: v('redisUrl'),
    redisPrefix: v('redisPrefix'),
    flushIntervalMs: v('flushIntervalMs'),
    gateIntervalMs: v('gateIntervalMs'),
    maxUnflushedAgeMs: v('maxUnflushedAgeMs'),
    flushBatchSize: v('flushBatchSize'),
    sessionLoadTimeoutMs: v('sessionLoadTimeoutMs'),
    sessionIdleTimeoutMs: v('sessionIdleTimeoutMs'),
    sessionCloseGraceMs: v('sessionCloseGraceMs'),
    sessionMemoryBudgetMb: v('sessionMemoryBudgetMb'),
    maxSessions: v('maxSessions'),
    logLevel: v('logLevel'),
    configFile,
    sources,
    warnings: c.warnings,
  }
}

/** Checks between keys, on the merged values. */
function crossCheck(c: Collector, values: Map<ResolvedKey, Entry>): void {
  const get = (k: ResolvedKey): Entry | undefined => values.get(k)
  const label = (k: ResolvedKey): string => {
    const e = get(k)
    return e === undefined ? k : `${k} = ${show(e.value)} from ${e.origin}`
  }
  const atMost = (small: ResolvedKey, big: ResolvedKey): void => {
    const s = get(small)
    const b = get(big)
    if (s === undefined || b === undefined) return
    // A default never makes a valid setting fail: the master caps the defaults itself.
    if (s.source === 'default') return
    if ((s.value as number) > (b.value as number)) {
      c.add({ key: small, source: s.source, origin: s.origin, expected: `at most ${label(big)}`, received: show(s.value) })
    }
  }
  atMost('laneMaxInFlight', 'claimedMaxSize')
  atMost('workerCloseTimeoutMs', 'stopTimeoutMs')
  atMost('respawnMinDelayMs', 'respawnMaxDelayMs')

  // maxUnflushedAgeMs ≥ flushIntervalMs: report the one that was set (the age, when both were).
  const interval = get('flushIntervalMs')
  const age = get('maxUnflushedAgeMs')
  if (interval !== undefined && age !== undefined && (age.value as number) < (interval.value as number)) {
    if (age.source !== 'default') {
      c.add({ key: 'maxUnflushedAgeMs', source: age.source, origin: age.origin, expected: `at least ${label('flushIntervalMs')}`, received: show(age.value) })
    } else {
      c.add({ key: 'flushIntervalMs', source: interval.source, origin: interval.origin, expected: `at most ${label('maxUnflushedAgeMs')} (raise maxUnflushedAgeMs too)`, received: show(interval.value) })
    }
  }

  const groups = get('groups')
  const shards = get('shards')
  if (groups !== undefined && shards !== undefined) {
    const total = (groups.value as GroupConfig[]).reduce((n, g) => n + g.count, 0)
    if (total > (shards.value as number)) {
      c.add({ key: 'shards', source: shards.source, origin: shards.origin, expected: `at least the number of workers (${total}, from ${groups.origin}); a worker without a shard gets no tasks`, received: show(shards.value) })
    }
  }

  const intake = get('intakeEndpoints')
  const allow = get('allowNonLoopback')
  if (intake !== undefined && allow?.value !== true) {
    const exposed = (intake.value as string[]).filter((e) => !parseEndpoint(e, 'bind', { baseDir: '/' }).loopback)
    if (exposed.length > 0) {
      c.add({
        key: 'intakeEndpoints',
        source: intake.source,
        origin: intake.origin,
        expected: `loopback endpoints unless allowNonLoopback is true (intake has no authentication; set allowNonLoopback, PEONY_ALLOW_NON_LOOPBACK=1 or --allow-non-loopback to bind ${exposed.join(', ')})`,
        received: show(exposed),
      })
    }
  }
}

/** Total number of worker threads of a configuration. */
export function workerCount(config: Pick<ServerConfig, 'groups'>): number {
  return config.groups.reduce((n, g) => n + g.count, 0)
}

// ───────────────────────────── help ─────────────────────────────

/** The `--help` text, generated from the schema. */
export function helpText(): string {
  const lines = [
    'Usage: peony-server [options]',
    '',
    'Runs a Peony server: binds intake for brokers, connects egress to the forwarder, and runs the',
    'application module in worker threads. Sources, later wins: defaults ← config file ← PEONY_* ← flags.',
    '',
    'Options:',
    `  --config <path>              Config file (.json, or .js/.mjs/.ts whose default export is the object or a`,
    `                               function returning it). Env ${CONFIG_ENV}. Default: ${CONFIG_FILE_NAMES.join(', ')} in the working directory.`,
    '  -h, --help                   Print this help and exit.',
  ]
  for (const s of specs) {
    const flag = s.flagNames[0]
    const head = flag === undefined ? `  (config file) ${s.key}` : `  --${flag}${s.arg === undefined ? '' : ` ${s.arg}`}`
    const pad = head.length < 31 ? ' '.repeat(31 - head.length) : '\n' + ' '.repeat(31)
    const extra = [
      s.flagNames.length > 1 ? `alias ${s.flagNames.slice(1).map((f) => `--${f}`).join(', ')}` : '',
      s.boolean === true && flag !== undefined ? `--no-${flag} sets false` : '',
      s.envName !== undefined ? `env ${s.envName}` : '',
      `default ${s.defaultText}`,
    ].filter((x) => x !== '')
    lines.push(`${head}${pad}${s.doc}`, `${' '.repeat(31)}[${extra.join('; ')}]`)
  }
  lines.push('', 'Every value is validated; problems exit with code 2 and PEONY_CONFIG_INVALID. Signals: SIGTERM/SIGINT stop gracefully (a second one forces exit 1), SIGHUP is ignored.')
  return lines.join('\n')
}

/** A summary of the configuration for logs (no functions, paths as they are). */
export function describeConfig(config: ServerConfig): Record<string, unknown> {
  const { router, warnings: _w, sources: _s, ...rest } = config
  return { ...rest, redisUrl: redactUrl(config.redisUrl), router: router === undefined ? undefined : 'function' }
}
