/**
 * The server's configuration schema: every key once, with its type and range (a TypeBox JSON
 * Schema), default, environment variable and flag, `--help` line and docs row. From it come the
 * `ServerConfig` type, the loader's checks, `--help`, the tables in docs/configuration.md and the
 * README (`pnpm --filter peony-server run gen:config-docs`), and peony.config.schema.json.
 * The keys the master has too are its definitions (`masterOptionKeys`: one range, one default),
 * with the server's names and words added.
 */
import { hostname } from 'node:os'
import type { ResourceLimits } from 'node:worker_threads'
import type { Task } from '@peony/protocol'
import {
  Bad,
  boolean,
  closest,
  custom,
  defineSchema,
  directoryPath,
  endpointExpected,
  existingFile,
  integer,
  isPlainObject,
  jsonFromText,
  MAX_TIMER_MS,
  oneOf,
  optional,
  parseEndpoint,
  parseEndpointList,
  redactUrl,
  string,
  Type,
  type ConfigValues,
} from '@peony/config'
import { MAX_WORKERS, masterOptionKeys } from '@peony/master'

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

export { redactUrl, parseEndpoint }

// ───────────────────────────── rules of the server's own keys ─────────────────────────────

function defaultServerId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
  return `peony-${host}`.slice(0, 64)
}

const logLevels = Object.values(LogLevel)
const storageDrivers = Object.values(StorageDriver)

const appExpected = 'the path (or file: URL) of an existing application module'
const storagePathExpected = 'the path (or file: URL) of a directory; it is created if missing'
const intakeExpected = `a non-empty list of ${endpointExpected('bind')}`
const redisUrlExpected = 'a redis://[user:password@]host[:port][/db] or rediss:// URL'
const redisPrefixExpected = 'a string of at most 256 characters without NUL (empty: no prefix)'
const routerExpected = 'a function (task) => group id, set in a .js/.mjs/.ts config file'
const resourceLimitKeys = ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'] as const
const resourceLimitsExpected = `an object with any of ${resourceLimitKeys.join(', ')} (positive numbers; in env/flags as JSON)`

function checkRedisUrl(v: unknown): string {
  if (typeof v !== 'string') throw new Bad(redisUrlExpected)
  const received = redactUrl(v)
  let url: URL
  try {
    url = new URL(v)
  } catch {
    throw new Bad(redisUrlExpected, { received })
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new Bad(`${redisUrlExpected}; the scheme ${url.protocol}// is not supported`, { received })
  if (url.hostname === '') throw new Bad(`${redisUrlExpected}; the host is missing`, { received })
  if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d+$/.test(url.pathname))
    throw new Bad(`${redisUrlExpected}; the path is a database number`, { received })
  return v
}

function checkResourceLimits(v: unknown): WorkerResourceLimits {
  if (!isPlainObject(v)) throw new Bad(resourceLimitsExpected)
  const out: WorkerResourceLimits = {}
  for (const [k, n] of Object.entries(v)) {
    if (!(resourceLimitKeys as readonly string[]).includes(k)) {
      throw new Bad(`only the keys ${resourceLimitKeys.join(', ')}`, { path: `.${k}`, suggestion: closest(k, resourceLimitKeys), received: n })
    }
    if (n === undefined) continue
    if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0 || n > 1_048_576)
      throw new Bad('a number of MB, > 0 and ≤ 1048576', { path: `.${k}`, received: n })
    out[k as (typeof resourceLimitKeys)[number]] = n
  }
  return out
}

const ms = (help: string, docs: { default?: string; valuesNote?: string; meaning: string }): { arg: string; help: string; docs: typeof docs } => ({
  arg: '<ms>',
  help,
  docs,
})
const m = masterOptionKeys

// ───────────────────────────── the keys, in help order ─────────────────────────────

/** Every key of the server's configuration (see the module comment). */
export const serverConfigKeys = {
  serverId: string(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }), {
    expected: '1–64 characters of A–Z a–z 0–9 . _ -, starting with a letter or digit',
    default: defaultServerId,
    defaultText: 'peony-<hostname>',
    arg: '<id>',
    help: "This server's id: brokers choose servers by it (protocol §1.3) and egress senders are named after it. Set it explicitly when several servers run or when host names are not stable (containers). (was NAME)",
    docs: {
      values: '1–64 of `A–Z a–z 0–9 . _ -`, starting with a letter or digit',
      meaning:
        "This server's id: brokers choose servers by it ([protocol §1.3](protocol.md#13-choosing-a-server-brokers-fronting-several-peony-servers)) and both egress senders are named after it (`<serverId>/master.…`, `<serverId>/egress.…`). Set it explicitly when several servers run or host names change (containers); the server logs a notice when it uses the default.",
    },
  }),
  app: custom<string>({
    schema: Type.String({ minLength: 1 }),
    expected: appExpected,
    text: (raw) => raw.trim(),
    check: (v, ctx) => existingFile(v, ctx, appExpected),
    defaultText: '(required; peony.config.json here sets the idle-rpg example)',
    arg: '<path>',
    help: 'The application module (default export: the app from createApp()), loaded in every worker thread.',
    docs: {
      default: 'required (`apps/peony-server/peony.config.json` sets the example)',
      values: 'path or `file:` URL of an existing file',
      meaning: 'The application module (default export, or export `app`: the app from `createApp()`), imported in every worker thread.',
    },
  }),
  intakeEndpoints: custom<string[]>({
    ...m.intakeEndpoints,
    schema: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })]),
    expected: intakeExpected,
    text: (raw) =>
      raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    check: (v, ctx) => parseEndpointList(v, 'bind', ctx, intakeExpected),
    flags: ['intake', 'intake-endpoints'],
    repeatable: true,
    arg: '<endpoint>',
    help: 'Intake ROUTER endpoints that brokers connect to (comma-separated in env; repeat the flag). (was HOST/PORT)',
    docs: {
      values: 'non-empty list of distinct `tcp://<ip, interface or *>:<port or *>` or `ipc://<path>` (path ≤ 107 bytes)',
      meaning: "The intake ROUTER's endpoints, all bound. Port `*` picks a free port (the ready line shows it).",
    },
  }),
  allowNonLoopback: boolean({
    default: false,
    help: 'Required to bind intake on a non-loopback interface: ZeroMQ intake has no authentication, so exposing it is a deliberate choice.',
    docs: {
      values: 'boolean',
      meaning: 'Must be true to bind intake on anything but loopback (`0.0.0.0`, `*`, a LAN address, an interface name): intake has no authentication.',
    },
  }),
  forwarderEndpoint: custom<string>({
    ...m.forwarderEndpoint,
    expected: endpointExpected('connect'),
    text: (raw) => raw.trim(),
    check: (v, ctx) => parseEndpoint(v, 'connect', ctx).endpoint,
    flags: ['forwarder', 'forwarder-endpoint'],
    arg: '<endpoint>',
    help: "The forwarder's ROUTER endpoint that egress connects to (any host).",
    docs: { values: '`tcp://<host>:<port>` or `ipc://<path>`', meaning: "The forwarder's ROUTER that both egress DEALERs connect to (any host)." },
  }),
  egressAck: custom<boolean>({
    ...m.egressAck,
    help: 'Add sender/seq to egress and re-send what the forwarder has not acknowledged after a reconnect (protocol §2).',
    docs: {
      values: 'boolean',
      meaning:
        'Add `sender`/`seq` to egress, keep messages until the forwarder acknowledges them, re-send after a reconnect ([protocol §2](protocol.md#2-egress-peony--forwarder)). Only useful with a forwarder that acknowledges.',
    },
  }),
  egressBufferMax: custom<number>({
    ...m.egressBufferMax,
    arg: '<n>',
    help: 'Messages kept per egress sender while the forwarder is away; overflow is dropped and counted.',
    docs: { meaning: 'Messages each egress sender keeps while the forwarder is away (or unacknowledged); overflow is dropped and counted.' },
  }),
  groups: custom<GroupConfig[]>({
    ...m.groups,
    arg: '<groups>',
    help: 'Worker groups, as JSON or id:count,… (was GROUP_LIST).',
    docs: {
      default: '`1:2`',
      values: `JSON \`[{ "id": 1, "count": 2 }]\`, or \`id:count,…\` in env/flags; ids are integers or names of 1–64 \`A–Z a–z 0–9 . _ -\`; \`1\` and \`"1"\` are the same group; at most ${MAX_WORKERS} workers in all`,
      meaning: 'Worker groups: `count` worker threads per group.',
    },
  }),
  workers: optional(
    integer(1, MAX_WORKERS, {
      expected: `an integer from 1 to ${MAX_WORKERS}: one group (id 1) of that many workers`,
      shorthand: true,
      arg: '<n>',
      help: 'Shorthand for groups = one group (id 1) of n workers. Not together with groups in the same source.',
      docs: { values: `1–${MAX_WORKERS}`, meaning: 'Shorthand for one group (id 1) of n workers.' },
    }),
  ),
  router: optional(
    custom<GroupRouter>({
      schema: undefined,
      expected: routerExpected,
      check: (v) => {
        if (typeof v !== 'function') throw new Bad(routerExpected)
        return v as GroupRouter
      },
      defaultText: 'every task to the first group',
      help: 'Function (task) => group id, run in the master for every task; config module only (was GROUP_ROUTER).',
      docs: {
        default: 'every task to the first group',
        values: 'a function `(task) => group id`, config module only',
        meaning:
          'Picks a task\'s group; runs in the master thread for every task (keep it cheap and pure). An unknown id, or a throw, is "no route" (−10007 for task cmd 10).',
      },
    }),
  ),
  queueMaxSize: custom<number>({
    ...m.queueMaxSize,
    arg: '<n>',
    help: 'Tasks queued in the master per worker; beyond it client requests are refused with -10002 (was TASK_QUEUE_MAX_SIZE, where ≤ 0 meant unbounded: not supported).',
    docs: { meaning: 'Tasks waiting in the master per worker (not yet dispatched); beyond it task cmd 10 is refused −10002 (15/20 are always accepted).' },
  }),
  maxQueueWaitMs: custom<number>({
    ...m.maxQueueWaitMs,
    ...ms('A client request (cmd 10) that waited longer than this in the master is answered -10002 instead of started late; 0 turns it off.', {
      meaning:
        'A client request (task cmd 10; never 15/20/100) that waited longer than this in the master is answered −10002 instead of being started late, counted under `discard_tasks.reasons.queue_wait`; 0 turns it off.',
    }),
  }),
  claimedMaxSize: custom<number>({
    ...m.claimedMaxSize,
    arg: '<n>',
    help: 'Tasks dispatched to one worker and not yet finished, at most (was TASK_CLAIMED_MAX_SIZE).',
    docs: { meaning: 'Tasks dispatched to one worker and not yet settled, at most.' },
  }),
  laneMaxInFlight: custom<number>({
    ...m.laneMaxInFlight,
    arg: '<n>',
    help: 'Tasks of one routing key dispatched to its worker at a time (they still run one by one there); ≤ claimedMaxSize.',
    docs: { valuesNote: ', ≤ `claimedMaxSize`', meaning: 'Tasks of one routing key dispatched to its worker at a time; they still run one by one there.' },
  }),
  laneKeepIdle: custom<number>({
    ...m.laneKeepIdle,
    arg: '<n>',
    help: 'Idle lanes (players with nothing queued or running) the master keeps per worker for reuse, ~100 B each; past it the one idle longest is deleted. Bounds what the master keeps for players who have left. 0: none.',
    docs: {
      meaning:
        "Idle lanes (routing keys with nothing queued or running) the master keeps per worker for reuse, about 100 bytes each; past it the lane idle longest is deleted, and 0 deletes a lane as soon as it goes idle. A deleted lane is created again at the key's next task, so order is kept. This bounds all the master keeps for players who have left (stats: `lanes`).",
    },
  }),
  shards: custom<number>({
    ...m.shards,
    arg: '<n>',
    help: 'Fixed number of shards between routing keys and workers; ≥ the number of workers. Changing it moves players between workers.',
    docs: {
      valuesNote: ', ≥ the number of workers',
      meaning: "Fixed shards between routing keys and workers. Changing it (or a group's `count`) moves players between workers.",
    },
  }),
  maxFrameBytes: custom<number>({
    ...m.maxFrameBytes,
    arg: '<bytes>',
    help: 'Largest intake frame accepted, checked before decoding; larger frames are rejected and counted.',
    docs: { meaning: 'Largest intake frame accepted, checked before decoding; also the largest egress frame sent.' },
  }),
  workTimeoutMs: custom<number>({
    ...m.workTimeoutMs,
    ...ms('Per-handler deadline; past it the client gets -10001. 0 disables it (was WORK_TIMEOUT, in seconds).', {
      valuesNote: '; `0` disables',
      meaning: "Deadline of a task's pre-hooks + handler; past it the client gets −10001 and onError `PEONY_HANDLER_TIMEOUT`. A route may override it.",
    }),
  }),
  blockedTimeoutMs: custom<number | undefined>({
    ...m.blockedTimeoutMs,
    ...ms('A worker whose event loop has not turned for this long while it holds tasks is terminated and respawned.', {
      meaning: 'A worker whose event loop has not turned for this long while it holds tasks is terminated and respawned.',
    }),
  }),
  stopTimeoutMs: custom<number>({
    ...m.stopTimeoutMs,
    ...ms("Whole graceful-stop budget after SIGTERM/SIGINT (was STOP_TIMEOUT, in seconds). Keep the orchestrator's grace period above it.", {
      meaning:
        "The whole graceful-stop budget ([lifecycle.md](lifecycle.md#graceful-stop)). The process is forced out 5 s after it. Keep the orchestrator's grace period above `stopTimeoutMs` + 5 s.",
    }),
  }),
  workerCloseTimeoutMs: custom<number>({
    ...m.workerCloseTimeoutMs,
    ...ms(
      'Part of the stop budget given to workers to run their stop hooks and flush; ≤ stopTimeoutMs (the master uses at most half the stop budget for it).',
      {
        valuesNote: ', ≤ `stopTimeoutMs`',
        meaning: 'The part of the stop budget for workers to run their stop hooks and flush (at most half of `stopTimeoutMs` is used).',
      },
    ),
  }),
  spareWorkers: custom<number>({
    ...m.spareWorkers,
    arg: '<0|1>',
    help: 'Loaded spare worker threads kept to replace a worker that dies at once (a respawn then costs no thread start); 0 turns it off.',
    docs: {
      values: '0 or 1',
      meaning: 'Loaded spare worker threads kept to replace a worker that dies at once (a respawn then costs no thread start); 0 turns it off.',
    },
  }),
  respawnMinDelayMs: custom<number>({
    ...m.respawnMinDelayMs,
    ...ms('Respawn delay of a crash-looping worker (a first crash respawns at once; the delay then doubles up to respawnMaxDelayMs).', {
      valuesNote: ', ≤ `respawnMaxDelayMs`',
      meaning: 'Respawn back-off of a crash-looping worker: a first crash respawns at once, the next quick ones after this delay, doubling.',
    }),
  }),
  respawnMaxDelayMs: custom<number>({
    ...m.respawnMaxDelayMs,
    ...ms('Largest respawn delay; ≥ respawnMinDelayMs.', { meaning: 'Largest respawn delay.' }),
  }),
  workerResourceLimits: optional(
    custom<WorkerResourceLimits>({
      schema: Type.Object(Object.fromEntries(resourceLimitKeys.map((k) => [k, Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1_048_576 }))])), {
        additionalProperties: false,
      }),
      expected: resourceLimitsExpected,
      text: (raw) => jsonFromText(raw, resourceLimitsExpected),
      check: checkResourceLimits,
      defaultText: "Node's defaults",
      arg: '<json>',
      help: 'resourceLimits of each worker thread, e.g. {"maxOldGenerationSizeMb":512}.',
      docs: {
        default: "Node's defaults",
        values:
          'object with any of `maxOldGenerationSizeMb`, `maxYoungGenerationSizeMb`, `codeRangeSizeMb`, `stackSizeMb` (numbers > 0, ≤ 1048576); JSON in env/flags',
        meaning: '`resourceLimits` of each worker thread. A worker past its heap limit dies (`deaths.out_of_memory`) and is respawned.',
      },
    }),
  ),
  storage: oneOf(storageDrivers, {
    default: StorageDriver.LEVELDB,
    arg: '<driver>',
    help: `Where the players' sessions are stored: ${storageDrivers.join(', ')} (memory is lost when the server stops). The master's storage thread opens it; a failure to open stops the start.`,
    docs: {
      values: '`leveldb`, `redis`, `memory` (case-insensitive in env/flags)',
      meaning:
        "Where the players' sessions are stored; the master's storage thread opens it before intake is bound. `memory` loses everything at stop (a warning is logged).",
    },
  }),
  storagePath: custom<string>({
    schema: Type.String({ minLength: 1 }),
    expected: storagePathExpected,
    text: (raw) => raw.trim(),
    check: (v, ctx) => directoryPath(v, ctx, storagePathExpected),
    default: './data/peony',
    checkDefault: true,
    defaultText: './data/peony (in the working directory)',
    arg: '<dir>',
    help: 'The LevelDB directory (storage leveldb); its parent is created if missing. One server per directory: a second one fails with PEONY_STORAGE_LOCKED.',
    docs: {
      default: '`./data/peony` against the working directory',
      values: 'path or `file:` URL; must not be an existing file',
      meaning:
        'The LevelDB directory (`storage: leveldb`). The server creates its parent folders at start, LevelDB the directory. One process per directory: another server on it fails to start with `PEONY_STORAGE_OPEN_FAILED` (cause `PEONY_STORAGE_LOCKED`).',
    },
  }),
  fenceCacheSize: integer(1, 1 << 30, {
    unit: 'fences',
    default: 100_000,
    arg: '<n>',
    help: 'Fence generations the LevelDB storage keeps cached (storage leveldb), ~150 B each; past it the least recently used one (claimed or written) is dropped and read from disk again when its player comes back. Bounds what the storage thread keeps for players who have left.',
    docs: {
      meaning:
        'Fence generations the LevelDB storage keeps cached (storage `leveldb`), about 150 bytes each; past it the least recently used one (claimed or written) is dropped and read from disk again when its player comes back (fencing is unchanged: an entry not yet on disk or with a write in flight is never dropped). Bounds what the storage thread keeps for players who have left.',
    },
  }),
  redisUrl: custom<string>({
    schema: Type.String({ pattern: '^rediss?://' }),
    expected: redisUrlExpected,
    text: (raw) => raw.trim(),
    check: checkRedisUrl,
    default: 'redis://127.0.0.1:6379',
    arg: '<url>',
    help: 'The Redis server (storage redis): redis://[user:password@]host[:port][/db], or rediss:// for TLS.',
    docs: {
      values: '`redis://[user:password@]host[:port][/db]` or `rediss://…` (TLS)',
      meaning: 'The Redis server (`storage: redis`). The password is replaced by `***` in problems, logs and the ready line.',
    },
  }),
  redisPrefix: string(Type.String({ maxLength: 256, pattern: '^[^\\u0000]*$' }), {
    expected: redisPrefixExpected,
    default: 'peony:',
    arg: '<prefix>',
    help: "Prefix of every Redis key (storage redis); servers that must not see each other's players use different prefixes.",
    docs: {
      values: 'at most 256 characters, no NUL; may be empty in a file',
      meaning: 'Prepended to every Redis key (`storage: redis`); deployments sharing a Redis use different prefixes.',
    },
  }),
  flushIntervalMs: integer(1, MAX_TIMER_MS, {
    unit: 'ms',
    default: 1000,
    ...ms("Period of the sessions' write-behind tick, which also checks evictions.", {
      meaning: "Period of each worker's write-behind tick, which also checks evictions.",
    }),
  }),
  gateIntervalMs: integer(0, 1_000, {
    unit: 'ms',
    default: 2,
    ...ms(
      'Group commit of the output gate: with no commit in flight, gated changes are written at the end of the turn; while one is in flight, the next commit starts this long after its first change (0 = at the end of the turn), or when the last in flight is stored. Replies leave once their change is written.',
      {
        meaning:
          "Group commit of the output gate (routes with `gate: 'stored'`): every player's gated changes go out in one fenced batch, and their replies, pushes and messages leave once it is stored. With no commit in flight, a commit starts at the end of the turn; while one is in flight, the next starts this long after the first change it carries (0 = at the end of the turn), or as soon as the last one in flight is stored.",
      },
    ),
  }),
  maxUnflushedAgeMs: integer(1, MAX_TIMER_MS, {
    unit: 'ms',
    default: 5000,
    ...ms('A changed session is written within this long while storage answers (what a crash can lose); ≥ flushIntervalMs.', {
      valuesNote: ', ≥ `flushIntervalMs`',
      meaning: 'A changed session is written within this long while storage answers: the most a crash (SIGKILL, power loss) can lose.',
    }),
  }),
  flushBatchSize: integer(1, 100_000, {
    unit: 'sessions',
    default: 500,
    arg: '<n>',
    help: 'Sessions written per storage call of the write-behind.',
    docs: { meaning: 'Sessions per storage write call (`writeFenced`).' },
  }),
  sessionLoadTimeoutMs: integer(0, MAX_TIMER_MS, {
    unit: 'ms',
    default: 5000,
    ...ms("Deadline of loading one session; past it the player's waiting requests get -10005. 0 disables it.", {
      valuesNote: '; `0` disables',
      meaning: "Deadline of loading one session; past it (or on a storage error) the player's waiting requests get −10005 and the next request loads again.",
    }),
  }),
  sessionIdleTimeoutMs: integer(0, MAX_TIMER_MS, {
    unit: 'ms',
    default: 900_000,
    defaultText: '900000 (15 min)',
    ...ms('A session without requests or timers for this long is written and dropped from memory. 0: never.', {
      default: '`900000` (15 min)',
      valuesNote: '; `0`: never',
      meaning: 'A session without requests or timer firings for this long is written and dropped from memory.',
    }),
  }),
  sessionCloseGraceMs: integer(0, MAX_TIMER_MS, {
    unit: 'ms',
    default: 60_000,
    ...ms('A session is written and dropped from memory this long after its client closed (task cmd 20), unless a request comes first.', {
      meaning: 'A session is written and dropped this long after its client closed (task cmd 20), unless a request comes first; `0`: on the next tick.',
    }),
  }),
  sessionMemoryBudgetMb: integer(0, 1_048_576, {
    unit: 'MiB',
    default: 256,
    arg: '<MiB>',
    help: 'Estimated session state per worker above which the least recently used sessions are written and dropped. 0: no limit.',
    docs: {
      valuesNote: '; `0`: no limit',
      meaning: 'Estimated session state per worker above which the least recently used sessions are written and dropped.',
    },
  }),
  maxSessions: integer(0, Number.MAX_SAFE_INTEGER, {
    unit: 'sessions',
    default: 0,
    defaultText: '0 (no limit)',
    arg: '<n>',
    help: 'Sessions resident per worker above which the least recently used ones are written and dropped. 0: no limit.',
    docs: { default: '`0` (no limit)', meaning: 'Resident sessions per worker above which the least recently used ones are written and dropped.' },
  }),
  logLevel: oneOf(logLevels, {
    default: LogLevel.INFO,
    arg: '<level>',
    help: `pino log level: ${logLevels.join(', ')}.`,
    docs: { values: logLevels.map((l) => `\`${l}\``).join(', '), meaning: "pino level of the server's logger; worker threads log at the same level." },
  }),
}

/** Environment variable naming the config file. */
export const CONFIG_ENV = 'PEONY_CONFIG'
/** Files looked for in the working directory when neither `--config` nor PEONY_CONFIG is given. */
export const CONFIG_FILE_NAMES = ['peony.config.json', 'peony.config.ts', 'peony.config.mts', 'peony.config.mjs', 'peony.config.js'] as const

/** Names of the original (Python) configuration, mapped to ours for "did you mean". */
const ORIGINAL_NAMES: Record<string, keyof typeof serverConfigKeys> = {
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

/** The server's configuration schema. */
export const serverSchema = defineSchema(serverConfigKeys, {
  program: 'peony-server',
  envPrefix: 'PEONY_',
  configEnv: CONFIG_ENV,
  configFileNames: CONFIG_FILE_NAMES,
  aliases: ORIGINAL_NAMES,
})

/** The schema's values, by key (the `workers` shorthand included). */
export type ServerConfigValues = ConfigValues<typeof serverConfigKeys>
