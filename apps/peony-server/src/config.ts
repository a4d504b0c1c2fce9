/**
 * The server's configuration: the schema is `serverSchema` (config-schema.ts, one definition per
 * key); this module is the glue that loads it (with @peony/config's loader), checks keys against
 * each other, and exposes `--help` and the key list.
 *
 * Sources, later wins: defaults ← config file ← environment (`PEONY_*`) ← command-line flags.
 * The config file is `--config <path>`, else `PEONY_CONFIG`, else the first of
 * `peony.config.{json,ts,mts,mjs,js}` found in the working directory (more than one found is an
 * error). JSON holds plain values; a module's default export is the object, or a function (maybe
 * async) of `{ env, cwd }` returning it, so a `router` function can live there.
 *
 * Problems are collected, not thrown one by one: `loadConfig` rejects with one `ConfigError`
 * (`PEONY_CONFIG_INVALID`) listing each problem with its key, its source (file/env/flag) and
 * what was expected. Unknown keys and flags are errors, with a "did you mean" when a known name
 * is close. Unknown `PEONY_*` variables are errors when close to a known one, and otherwise only
 * warnings (`config.warnings`): the environment is shared with other tools that use the same
 * prefix (`PEONY_INTEGRATION` in CI, say).
 *
 * Paths (`app`, `storagePath`, `ipc://` endpoints) given in a file resolve against the file's
 * folder; given in the environment or flags (or by default), against the working directory.
 */
import { extname } from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  load,
  parseEndpoint,
  redactUrl,
  show,
  wantsHelp,
  type ConfigKeyInfo as KeyInfo,
  type ConfigSource,
  type Entry,
  type Layer,
  type LoadInput,
  type Reporter,
} from '@peony/config'
import { CONFIG_ENV, CONFIG_FILE_NAMES, type serverConfigKeys, serverSchema, type GroupConfig, type ServerConfigValues } from './config-schema.ts'
import { ConfigError } from './errors.ts'

export { LogLevel, StorageDriver, CONFIG_ENV, CONFIG_FILE_NAMES, serverSchema } from './config-schema.ts'
export type { GroupConfig, GroupRouter, WorkerResourceLimits } from './config-schema.ts'
export type { ConfigModuleContext } from '@peony/config'
export { wantsHelp }

/** A key of the configuration schema (including the `workers` shorthand). */
export type ConfigKey = keyof typeof serverConfigKeys

/** Keys of ServerConfig that come from the schema. */
export type ResolvedKey = Exclude<ConfigKey, 'workers'>

/**
 * The resolved configuration: every key has its final value (see docs/configuration.md for
 * each). `app` and `storagePath` are absolute paths; `blockedTimeoutMs` undefined is the
 * master's default, max(workTimeoutMs, 5000).
 */
export type ServerConfig = Omit<ServerConfigValues, 'workers'> & {
  /** Absolute path of the config file that was read, if any. */
  configFile: string | undefined
  /** Where each key's value came from. */
  sources: Record<ResolvedKey, ConfigSource>
  /** Notes worth logging at start (ignored environment variables, idle groups). */
  warnings: string[]
}

/** What `loadConfig` reads. Each field defaults to the current process's. */
export type LoadConfigInput = LoadInput

/** One documented configuration key. */
export type ConfigKeyInfo = KeyInfo<ConfigKey>

/** Every configuration key with its environment variable, flags, default and meaning (drives --help and the docs). */
export function describeConfigKeys(): ConfigKeyInfo[] {
  return serverSchema.describe()
}

/** `workers: n` → `groups: [{ id: 1, count: n }]`, within one source. */
function foldWorkers(r: Reporter, layer: Layer): void {
  const w = layer.get('workers')
  if (w === undefined) return
  layer.delete('workers')
  const g = layer.get('groups')
  if (g !== undefined) {
    r.add({ key: 'workers', source: w.source, origin: `${w.origin} and ${g.origin}`, expected: 'either groups or workers in one source, not both' })
    return
  }
  layer.set('groups', { value: [{ id: 1, count: w.value as number }], source: w.source, origin: w.origin })
}

/** Checks between keys, on the merged values. */
function crossCheck(r: Reporter, values: ReadonlyMap<string, Entry>): void {
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
      r.add({ key: small, source: s.source, origin: s.origin, expected: `at most ${label(big)}`, received: show(s.value) })
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
      r.add({ key: 'maxUnflushedAgeMs', source: age.source, origin: age.origin, expected: `at least ${label('flushIntervalMs')}`, received: show(age.value) })
    } else {
      r.add({
        key: 'flushIntervalMs',
        source: interval.source,
        origin: interval.origin,
        expected: `at most ${label('maxUnflushedAgeMs')} (raise maxUnflushedAgeMs too)`,
        received: show(interval.value),
      })
    }
  }

  const groups = get('groups')
  const shards = get('shards')
  if (groups !== undefined && shards !== undefined) {
    const total = (groups.value as GroupConfig[]).reduce((n, g) => n + g.count, 0)
    if (total > (shards.value as number)) {
      r.add({
        key: 'shards',
        source: shards.source,
        origin: shards.origin,
        expected: `at least the number of workers (${total}, from ${groups.origin}); a worker without a shard gets no tasks`,
        received: show(shards.value),
      })
    }
  }

  const intake = get('intakeEndpoints')
  const allow = get('allowNonLoopback')
  if (intake !== undefined && allow?.value !== true) {
    const exposed = (intake.value as string[]).filter((e) => !parseEndpoint(e, 'bind', { baseDir: '/' }).loopback)
    if (exposed.length > 0) {
      r.add({
        key: 'intakeEndpoints',
        source: intake.source,
        origin: intake.origin,
        expected: `loopback endpoints unless allowNonLoopback is true (intake has no authentication; set allowNonLoopback, PEONY_ALLOW_NON_LOOPBACK=1 or --allow-non-loopback to bind ${exposed.join(', ')})`,
        received: show(exposed),
      })
    }
  }
}

/**
 * Loads, merges and validates the configuration (see the module comment for sources and rules).
 * Rejects with a ConfigError (`PEONY_CONFIG_INVALID`) listing every problem.
 */
export async function loadConfig(input: LoadConfigInput = {}): Promise<ServerConfig> {
  const r = await load(serverSchema, input, { fold: foldWorkers, crossCheck, importModule: importConfigModule })
  if (r.issues.length > 0) throw new ConfigError(r.issues)
  const { workers: _w, ...values } = r.values
  const warnings = r.warnings
  if (values.groups.length > 1 && values.router === undefined) {
    warnings.push(
      `groups ${values.groups
        .slice(1)
        .map((g) => String(g.id))
        .join(', ')} get no tasks: without a router every task goes to group ${String(values.groups[0]!.id)}`,
    )
  }
  return { ...values, configFile: r.configFile, sources: r.sources as Record<ResolvedKey, ConfigSource>, warnings }
}

/** Total number of worker threads of a configuration. */
export function workerCount(config: Pick<ServerConfig, 'groups'>): number {
  return config.groups.reduce((n, g) => n + g.count, 0)
}

/** The `--help` text, generated from the schema. */
export function helpText(): string {
  return serverSchema.help({
    usage: 'peony-server [options]',
    intro: [
      'Runs a Peony server: binds intake for brokers, connects egress to the forwarder, and runs the',
      'application module in worker threads. Sources, later wins: defaults ← config file ← PEONY_* ← flags.',
    ],
    options: [
      `  --config <path>              Config file (.json, or .js/.mjs/.ts whose default export is the object or a`,
      `                               function returning it). Env ${CONFIG_ENV}. Default: ${CONFIG_FILE_NAMES.join(', ')} in the working directory.`,
      '  -h, --help                   Print this help and exit.',
    ],
    footer: [
      'Every value is validated; problems exit with code 2 and PEONY_CONFIG_INVALID. Signals: SIGTERM/SIGINT stop gracefully (a second one forces exit 1), SIGHUP is ignored.',
    ],
  })
}

/** A summary of the configuration for logs (no functions, paths as they are). */
export function describeConfig(config: ServerConfig): Record<string, unknown> {
  const { router, warnings: _w, sources: _s, ...rest } = config
  return { ...rest, redisUrl: redactUrl(config.redisUrl), router: router === undefined ? undefined : 'function' }
}

// ───────────────────── TypeScript config files in the built server ─────────────────────

const TS_EXTENSIONS = ['.ts', '.mts', '.cts']
/** Running from the TypeScript sources (`pnpm start`, tests): tsx is loaded already. */
const FROM_SOURCE = import.meta.url.endsWith('.ts')
let tsxRegistered = false

/**
 * Imports a config module. The built server (dist/, the installed `peony-server` bin) registers
 * tsx's module hooks first for a `.ts`/`.mts` file; from the sources tsx is already there.
 * (Worker threads register it themselves for a TypeScript app.)
 */
async function importConfigModule(file: string): Promise<unknown> {
  const ts = TS_EXTENSIONS.includes(extname(file).toLowerCase())
  if (ts && !FROM_SOURCE && !tsxRegistered) {
    const { register } = await import('tsx/esm/api')
    register()
    tsxRegistered = true
  }
  try {
    return await import(pathToFileURL(file).href)
  } catch (err) {
    if (ts && loadedAsCommonJs(err) && err instanceof Error) err.message += ` (${TS_IN_COMMONJS_HINT})`
    throw err
  }
}

const TS_IN_COMMONJS_HINT =
  'a .ts file in a package whose package.json has no "type": "module" (npm init makes "commonjs") is loaded as CommonJS, ' +
  'which cannot use import/export: add "type": "module" to that package.json, or name the file .mts'

/** True when a module failed because Node loaded its ESM syntax as CommonJS. */
function loadedAsCommonJs(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'ERR_REQUIRE_CYCLE_MODULE' || code === 'ERR_REQUIRE_ESM') return true
  return err instanceof SyntaxError && /import statement outside a module|Unexpected token 'export'/.test(err.message)
}
