/**
 * Options of the master. Every field has a default (see `resolveMasterOptions`); the server app
 * (`apps/peony-server`) maps its configuration file, environment and flags onto these.
 */
import type { ResourceLimits } from 'node:worker_threads'
import type { Task } from '@peony/protocol'
import type { Logger } from 'pino'
import type { SessionSettings, StorageConfig } from './thread/messages.ts'
import { KEEP_IDLE_LANES } from './lanes/lane-scheduler.ts'
import { Defaults } from '@peony/protocol'
import { Bad, boolean, closest, custom, defineSchema, integer, isPlainObject, jsonFromText, MAX_TIMER_MS, optional, Type, type KeyDef } from '@peony/config'

export type { SessionSettings, StorageConfig }

/** A worker group of the original: `count` workers that share the tasks its router gives it. */
export interface GroupOptions {
  id: number | string
  count: number
}

/** Picks the group of a task (runs in the master for every task: keep it cheap and pure). */
export type GroupRouter = (task: Task) => number | string

export interface MasterOptions {
  /** This server's id: names its egress senders, and brokers choose servers by it (protocol §1.3). */
  serverId: string
  /** Path or file: URL of the application module, loaded in every worker thread. */
  appModule: string
  /** Intake ROUTER endpoints (default `['tcp://127.0.0.1:9250']`). */
  intakeEndpoints: string[]
  /** Largest accepted frame in bytes, checked before decoding (default 1 MiB). */
  maxFrameBytes: number
  /** The forwarder's ROUTER endpoint that egress DEALERs connect to (default `tcp://127.0.0.1:9260`). */
  forwarderEndpoint: string
  /** Add `sender`/`seq` to egress and keep unacknowledged messages for re-sending (default false). */
  egressAck: boolean
  /** Messages kept per egress sender while the forwarder is away; overflow is dropped and counted (default 100,000). */
  egressBufferMax: number
  /** Worker groups (default `[{ id: 1, count: 2 }]`). */
  groups: GroupOptions[]
  /** Group router (default: every task to the first group). */
  router?: GroupRouter | undefined
  /** Tasks queued in the master per worker, not yet dispatched; beyond it client requests are refused with -10002 (default 10,000). */
  queueMaxSize: number
  /**
   * A client request (task cmd 10; never 15/20/100) that has waited longer than this in the
   * master is answered -10002 instead of being started late (default 1,000 ms; 0 turns it off).
   */
  maxQueueWaitMs: number
  /** Tasks dispatched to one worker and not yet finished, at most (default 1,024). */
  claimedMaxSize: number
  /** At most this many tasks of one routing key are dispatched to its worker at a time (default 4). */
  laneMaxInFlight: number
  /**
   * Idle lanes (routing keys with nothing queued or running) each worker's scheduler keeps for
   * reuse, at most (default 8,192; about 100 bytes each). Past it the lane idle longest is
   * deleted; 0 deletes a lane as soon as it goes idle. This is all the master keeps for a
   * player who has left, so it bounds the master's memory per player, however many it has seen.
   */
  laneKeepIdle: number
  /** Fixed number of shards between routing keys and worker slots (default 256). */
  shards: number
  /** Per-handler deadline in ms; 0 disables it (default 30,000). A handler past it is answered -10001. */
  workTimeoutMs: number
  /** A worker whose event loop has not turned for this long while it holds tasks is terminated (default max(workTimeoutMs, 5,000)). */
  blockedTimeoutMs: number
  /** Whole graceful-stop budget in ms (default 30,000). */
  stopTimeoutMs: number
  /** Budget of stop phase 4 (workers flush and close) within the stop budget (default 10,000). */
  workerCloseTimeoutMs: number
  /**
   * Loaded spare worker threads kept ready to replace a worker that dies, so a respawn costs no
   * thread start (0 or 1; default 1). The spare holds the app module loaded but no slot and no
   * players; it costs one idle thread's memory.
   */
  spareWorkers: number
  /** `resourceLimits` of each worker thread. */
  resourceLimits?: ResourceLimits | undefined
  /** Respawn back-off of crash-looping workers. */
  respawnMinDelayMs: number
  respawnMaxDelayMs: number
  /** pino logger; a default one writes JSON to stdout. */
  logger?: Logger | undefined
  /**
   * The storage of the players' sessions, opened by the storage thread and served to every
   * worker (default: none; an app that defines sessions then fails to start with
   * PEONY_SESSION_NOT_CONFIGURED).
   */
  storage?: StorageConfig | undefined
  /** Write-behind, eviction and load settings of the sessions (every field defaults; see @peony/worker SessionOptions). */
  sessions?: SessionSettings | undefined
}

/** Most worker threads a master runs in all. */
export const MAX_WORKERS = 1024
const GROUP_ID_STR_RE = /^[A-Za-z0-9._-]{1,64}$/

const groupsExpected = 'a non-empty array of { id: integer or name, count: integer ≥ 1 } (in env/flags: JSON, or id:count,… as 1:2,2:1)'

/** Worker groups: JSON, or `id:count,…` in text; ids distinct (1 and "1" are one group), at most MAX_WORKERS workers. */
const groups = custom<GroupOptions[]>({
  schema: Type.Array(
    Type.Object(
      {
        id: Type.Union([Type.Integer(), Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' })]),
        count: Type.Integer({ minimum: 1, maximum: MAX_WORKERS }),
      },
      { additionalProperties: false },
    ),
    { minItems: 1 },
  ),
  expected: groupsExpected,
  default: [{ id: 1, count: 2 }],
  defaultText: '1:2 (one group, id 1, of 2 workers)',
  text: (raw) => {
    const t = raw.trim()
    if (t.startsWith('[') || t.startsWith('{')) return jsonFromText(t, groupsExpected)
    return t.split(',').map((part, i) => {
      const m = /^\s*([^:\s]+)\s*:\s*(\S+)\s*$/.exec(part)
      if (m === null) throw new Bad(groupsExpected, { path: `[${i}]`, received: part.trim() })
      const id = /^-?\d+$/.test(m[1]!) ? Number(m[1]) : m[1]!
      const count = /^\d+$/.test(m[2]!) ? Number(m[2]) : m[2]!
      return { id, count }
    })
  },
  check: (v) => {
    if (!Array.isArray(v) || v.length === 0) throw new Bad(groupsExpected)
    const seen = new Map<string, number>()
    const out: GroupOptions[] = []
    let total = 0
    v.forEach((g: unknown, i) => {
      const path = `[${i}]`
      if (!isPlainObject(g)) throw new Bad('an object { id, count }', { path, received: g })
      for (const k of Object.keys(g)) {
        if (k !== 'id' && k !== 'count')
          throw new Bad('only the keys id and count', { path: `${path}.${k}`, suggestion: closest(k, ['id', 'count']), received: g[k] })
      }
      const { id, count } = g
      const idOk = (typeof id === 'number' && Number.isSafeInteger(id)) || (typeof id === 'string' && GROUP_ID_STR_RE.test(id))
      if (!idOk) throw new Bad('an integer, or a name of 1–64 characters A–Z a–z 0–9 . _ -', { path: `${path}.id`, received: id })
      if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1 || count > MAX_WORKERS) {
        throw new Bad(`an integer from 1 to ${MAX_WORKERS}`, { path: `${path}.count`, received: count })
      }
      const key = String(id)
      const prev = seen.get(key)
      if (prev !== undefined)
        throw new Bad(`distinct ids (a duplicate of groups[${prev}].id; 1 and "1" are the same group)`, { path: `${path}.id`, received: id })
      seen.set(key, i)
      total += count
      out.push({ id: id as number | string, count })
    })
    if (total > MAX_WORKERS) throw new Bad(`at most ${MAX_WORKERS} workers in all (got ${total})`)
    return out
  },
})

/** A list of endpoint strings; the master binds/connects what it is given (the server checks the form). */
const endpoints = (d: string): KeyDef<string[]> =>
  custom<string[]>({
    schema: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    expected: 'a non-empty list of endpoints',
    default: [d],
    defaultText: d,
  })

/**
 * The master's options that the server exposes too: type, range and default of each, written
 * once. `createMaster` checks its input against them; the server's configuration schema
 * (apps/peony-server) takes these definitions and adds its environment variables, flags and docs.
 */
export const masterOptionKeys = {
  intakeEndpoints: endpoints(Defaults.INTAKE_ENDPOINT),
  forwarderEndpoint: custom<string>({ schema: Type.String({ minLength: 1 }), expected: 'an endpoint', default: Defaults.EGRESS_ENDPOINT }),
  egressAck: boolean({ default: false }),
  egressBufferMax: integer(1, Number.MAX_SAFE_INTEGER, { unit: 'messages', default: 100_000 }),
  groups,
  queueMaxSize: integer(1, Number.MAX_SAFE_INTEGER, { unit: 'tasks', default: 10_000 }),
  maxQueueWaitMs: integer(0, 3_600_000, { unit: 'ms', default: 1_000 }),
  claimedMaxSize: integer(1, Number.MAX_SAFE_INTEGER, { unit: 'tasks', default: 1024 }),
  laneMaxInFlight: integer(1, 65_536, { unit: 'tasks', default: 4 }),
  laneKeepIdle: integer(0, 16_777_216, { unit: 'lanes', default: KEEP_IDLE_LANES }),
  shards: integer(1, 65_536, { default: 256 }),
  /** 1 KiB to 256 MiB: the server's documented range (the master alone accepted ≥ 64 before). */
  maxFrameBytes: integer(1024, 256 * 1024 * 1024, { unit: 'bytes', default: Defaults.MAX_FRAME_BYTES }),
  workTimeoutMs: integer(0, MAX_TIMER_MS, { unit: 'ms', default: 30_000 }),
  blockedTimeoutMs: optional(integer(100, MAX_TIMER_MS, { unit: 'ms', defaultText: 'max(workTimeoutMs, 5000)' })),
  stopTimeoutMs: integer(0, MAX_TIMER_MS, { unit: 'ms', default: 30_000 }),
  workerCloseTimeoutMs: integer(0, MAX_TIMER_MS, { unit: 'ms', default: 10_000 }),
  spareWorkers: integer(0, 1, { default: 1 }),
  respawnMinDelayMs: integer(0, MAX_TIMER_MS, { unit: 'ms', default: 50 }),
  respawnMaxDelayMs: integer(0, MAX_TIMER_MS, { unit: 'ms', default: 10_000 }),
}

/** The master's shared options as a schema (for `checkOptions`). */
export const masterOptionSchema = defineSchema(masterOptionKeys, {
  program: '@peony/master',
  envPrefix: 'PEONY_',
  configEnv: 'PEONY_CONFIG',
  configFileNames: [],
})

type Defaulted = Exclude<keyof typeof masterOptionKeys, 'blockedTimeoutMs'>

/** The defaults of every optional field (from `masterOptionKeys`). */
export const masterDefaults = Object.freeze(masterDefaultsFresh())

/** The defaults, as new objects (lists copied). */
export function masterDefaultsFresh(): Pick<MasterOptions, Defaulted> {
  const out: Record<string, unknown> = {}
  for (const [k, d] of Object.entries(masterOptionKeys) as [string, KeyDef<unknown>][]) {
    if (d.default !== undefined) out[k] = typeof d.default === 'function' ? (d.default as () => unknown)() : structuredClone(d.default)
  }
  return out as Pick<MasterOptions, Defaulted>
}

/** What `createMaster` accepts: `serverId` and `appModule` are required, the rest defaults. */
export type MasterInput = Pick<MasterOptions, 'serverId' | 'appModule'> & Partial<Omit<MasterOptions, 'serverId' | 'appModule'>>

/**
 * The options a master runs with: the defaults, overridden by every field of `input` that is
 * not undefined; `blockedTimeoutMs` defaults to `max(workTimeoutMs, 5000)`. Throws on options a
 * caller got wrong (see `validate`).
 */
export function resolveMasterOptions(input: MasterInput): MasterOptions {
  const o: MasterOptions = {
    ...masterDefaultsFresh(),
    ...stripUndefined(input),
    blockedTimeoutMs: input.blockedTimeoutMs ?? Math.max(input.workTimeoutMs ?? masterDefaults.workTimeoutMs, 5_000),
  } as MasterOptions
  validate(o)
  return o
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}

/**
 * Throws on options a caller got wrong (a programmer error: TypeError/RangeError). The options
 * the server exposes too are checked against their shared definitions (`masterOptionKeys`: one
 * range each), every problem at once; the rest here.
 */
function validate(o: MasterOptions): void {
  if (typeof o.serverId !== 'string' || o.serverId.length === 0) throw new TypeError('master option serverId must be a non-empty string')
  if (typeof o.appModule !== 'string' || o.appModule.length === 0) throw new TypeError('master option appModule must be a path or file: URL')
  if (!Array.isArray(o.intakeEndpoints) || o.intakeEndpoints.length === 0) throw new TypeError('master option intakeEndpoints must list at least one endpoint')
  if (!Array.isArray(o.groups) || o.groups.length === 0) throw new TypeError('master option groups must list at least one group')
  if (o.router !== undefined && typeof o.router !== 'function') throw new TypeError('master option router must be a function')
  const problems = masterOptionSchema.checkOptions(o as unknown as Record<string, unknown>)
  if (problems.length > 0) {
    throw new RangeError(problems.map((p) => `master option ${p.key} must be ${p.expected} (got ${p.received})`).join('; '))
  }
  const total = o.groups.reduce((n, g) => n + g.count, 0)
  if (total > o.shards) throw new RangeError(`master option shards (${o.shards}) must be ≥ the number of workers (${total})`)
}
