/**
 * The loader: merges four sources, later wins,
 *
 *   defaults ← config file ← environment (`PEONY_*`) ← command-line flags
 *
 * and collects every problem instead of stopping at the first. The config file is `--config
 * <path>`, else the schema's `configEnv` variable, else the one of `configFileNames` found in the
 * working directory (more than one is a problem). JSON holds plain values; a module's default
 * export is the object, or a function (maybe async) of `{ env, cwd }` returning it. Unknown keys
 * and flags are problems, with a "did you mean"; unknown variables with the prefix are problems
 * when close to a known one and otherwise only warnings (other tools share the prefix).
 *
 * Paths given in a file resolve against the file's folder; given in the environment or flags (or
 * by default), against the working directory (each key's check gets that folder in `ctx`).
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { basename, dirname, extname, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { checkKey } from './keys.ts'
import type { ConfigIssue, ConfigSchema, ConfigSource, ConfigValues, KeyDefs, KeySpec } from './schema.ts'
import { closest } from './suggest.ts'
import { Bad, isPlainObject, show, type Ctx } from './values.ts'

/** A value and where it came from. */
export interface Entry {
  value: unknown
  source: ConfigSource
  /** `file …`, `env PEONY_…`, `flag --…`, `default`. */
  origin: string
}

/** One source's values by key. */
export type Layer = Map<string, Entry>

/** What `load` reads. Each field defaults to the current process's. */
export interface LoadInput {
  /** Command-line arguments without `node` and the script (`process.argv.slice(2)`). */
  argv?: readonly string[] | undefined
  env?: Readonly<Record<string, string | undefined>> | undefined
  cwd?: string | undefined
}

/** What a config module's default-exported function receives. */
export interface ConfigModuleContext {
  env: Record<string, string | undefined>
  cwd: string
}

/** Hooks of a process's loader. */
export interface LoadHooks {
  /** Called on each source's layer before the merge (fold a shorthand key into its target). */
  fold?: ((report: Reporter, layer: Layer) => void) | undefined
  /** Checks between keys, on the merged values. */
  crossCheck?: ((report: Reporter, values: ReadonlyMap<string, Entry>) => void) | undefined
  /**
   * Imports a config module (`.js`, `.mjs`, `.ts`, …) and returns its namespace; default: `import()`.
   * A process that runs built JavaScript registers its TypeScript loader here, and may rethrow a
   * failure with a hint (the message becomes the problem's "got").
   */
  importModule?: ((file: string) => Promise<unknown>) | undefined
}

/** The outcome of a load: problems are returned, not thrown (the process picks its error). */
export interface LoadResult<D extends KeyDefs> {
  /** Resolved values (shorthand keys excluded); valid only when `issues` is empty. */
  values: ConfigValues<D>
  /** Where each resolved key's value came from. */
  sources: Record<string, ConfigSource>
  /** Every value with its origin, for messages. */
  entries: ReadonlyMap<string, Entry>
  /** Absolute path of the config file read, if any. */
  configFile: string | undefined
  issues: ConfigIssue[]
  /** Notes worth logging at start (ignored variables; those a hook adds). */
  warnings: string[]
}

/** Collects problems; each line names the key, the origin, the expected value and a suggestion. */
export class Reporter {
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

/** True when the arguments ask for `--help` (`-h`) before any `--`. */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false
    if (a === '--help' || a === '-h') return true
  }
  return false
}

/** Checks a value with the key's rule, recording a problem instead of throwing. */
function apply(r: Reporter, layer: Layer, spec: KeySpec, value: unknown, source: ConfigSource, origin: string, ctx: Ctx, fromText: boolean): void {
  try {
    const typed = fromText ? spec.text!(value as string) : value
    layer.set(spec.key, { value: checkKey(spec, typed, ctx), source, origin })
  } catch (err) {
    r.bad(err, spec.key, source, origin, value)
  }
}

const toKebab = (k: string): string => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
const toSnake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()

function parseArgv(
  schema: ConfigSchema<KeyDefs>,
  r: Reporter,
  argv: readonly string[],
  ctx: Ctx,
): { flags: Layer; config: { path: string; origin: string } | undefined } {
  const raw = new Map<KeySpec, { values: string[]; origin: string }>()
  let config: { path: string; origin: string } | undefined
  const knownFlags = ['config', 'help', ...schema.byFlag.keys()]
  /** Keys only a config module can set, by the flag one would try. */
  const fileOnly = new Map(schema.specs.filter((s) => s.text === undefined && s.shorthand !== true).map((s) => [toKebab(s.key), s]))
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--') {
      for (const extra of argv.slice(i + 1)) r.positional(extra)
      break
    }
    if (arg === '--help' || arg === '-h') continue
    if (!arg.startsWith('--')) {
      r.positional(arg)
      continue
    }
    const eq = arg.indexOf('=')
    let name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    let inline = eq === -1 ? undefined : arg.slice(eq + 1)
    let spec = schema.byFlag.get(name)
    if (spec === undefined && name.startsWith('no-') && schema.byFlag.get(name.slice(3))?.boolean === true) {
      if (inline !== undefined) {
        r.add({
          key: schema.byFlag.get(name.slice(3))!.key,
          source: 'flag',
          origin: `flag --${name}`,
          expected: 'no value after a --no- flag',
          received: show(inline),
        })
        continue
      }
      name = name.slice(3)
      spec = schema.byFlag.get(name)!
      inline = 'false'
    }
    const origin = `flag --${name}`
    if (name === 'config') {
      const v = inline ?? (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--') ? argv[++i] : undefined)
      if (v === undefined || v.trim() === '') r.add({ key: 'config', source: 'flag', origin, expected: 'the path of a config file after --config' })
      else config = { path: resolve(ctx.baseDir, v), origin }
      continue
    }
    if (spec === undefined) {
      // Skip what looks like the unknown flag's value, so it is not reported again as an argument.
      if (inline === undefined && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('-')) i++
      const other = fileOnly.get(name)
      if (other !== undefined) {
        r.add({ key: other.key, source: 'flag', origin, expected: other.expected })
        continue
      }
      const near = closest(name, knownFlags)
      r.unknown(`--${name}`, 'flag', origin, near === undefined ? undefined : `--${near}`, 'flag')
      continue
    }
    let value: string | undefined = inline
    if (value === undefined) {
      if (spec.boolean === true) value = 'true'
      else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) value = argv[++i]
    }
    if (value === undefined) {
      r.add({ key: spec.key, source: 'flag', origin, expected: `a value after --${name} (${spec.expected})` })
      continue
    }
    const prev = raw.get(spec)
    if (prev !== undefined && spec.repeatable === true) prev.values.push(value)
    else raw.set(spec, { values: [value], origin }) // a repeated plain flag: the last one wins
  }
  const flags: Layer = new Map()
  for (const [spec, { values, origin }] of raw) apply(r, flags, spec, values.join(','), 'flag', origin, ctx, true)
  return { flags, config }
}

function readEnv(schema: ConfigSchema<KeyDefs>, r: Reporter, env: Readonly<Record<string, string | undefined>>, ctx: Ctx): Layer {
  const { envPrefix, configEnv, program } = schema.options
  const layer: Layer = new Map()
  const known = [configEnv, ...schema.byEnv.keys()]
  const fileOnlyEnv = new Map(schema.specs.filter((s) => s.text === undefined && s.shorthand !== true).map((s) => [`${envPrefix}${toSnake(s.key)}`, s]))
  const strip = envPrefix.toLowerCase().replace(/[-_\s]/g, '')
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith(envPrefix) || name === configEnv) continue
    const raw = env[name]
    if (raw === undefined || raw.trim() === '') continue // empty counts as unset
    const spec = schema.byEnv.get(name)
    const origin = `env ${name}`
    const other = fileOnlyEnv.get(name)
    if (other !== undefined) {
      r.add({ key: other.key, source: 'env', origin, expected: other.expected, received: show(raw) })
      continue
    }
    if (spec === undefined) {
      const s = closest(name, known, strip)
      if (s !== undefined) r.unknown(name, 'env', origin, s, 'environment variable')
      else r.warnings.push(`ignored environment variable ${name}: not a ${program} setting`)
      continue
    }
    apply(r, layer, spec, raw, 'env', origin, ctx, true)
  }
  return layer
}

const MODULE_EXTENSIONS = ['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts']

async function readFile(
  r: Reporter,
  file: string,
  origin: string,
  env: LoadInput['env'],
  cwd: string,
  importModule: LoadHooks['importModule'],
): Promise<unknown> {
  const ext = extname(file).toLowerCase()
  const fail = (expected: string, received?: string): undefined => {
    r.add({ key: 'config', source: 'file', origin, expected, received })
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
  if (!MODULE_EXTENSIONS.includes(ext)) return fail('a .json, .js, .mjs, .ts or .mts config file', show(basename(file)))
  let mod: { default?: unknown }
  try {
    mod = (await (importModule === undefined ? import(pathToFileURL(file).href) : importModule(file))) as { default?: unknown }
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

function readFileLayer(schema: ConfigSchema<KeyDefs>, r: Reporter, obj: unknown, file: string, origin: string): Layer {
  const layer: Layer = new Map()
  if (!isPlainObject(obj)) {
    r.add({ key: 'config', source: 'file', origin, expected: 'an object of configuration keys', received: show(obj) })
    return layer
  }
  const ctx: Ctx = { baseDir: dirname(file) }
  const aliases = schema.options.aliases ?? {}
  for (const [k, v] of Object.entries(obj)) {
    if (k === '$schema' || k.startsWith('//')) continue // JSON comments
    const spec = schema.byKey.get(k)
    if (spec === undefined) {
      r.unknown(k, 'file', origin, aliases[k] ?? closest(k, [...schema.byKey.keys()]), 'key')
      continue
    }
    if (v === undefined) continue
    apply(r, layer, spec, v, 'file', origin, ctx, false)
  }
  return layer
}

function findConfigFile(schema: ConfigSchema<KeyDefs>, r: Reporter, cwd: string): string | undefined {
  const found = schema.options.configFileNames.map((n) => resolve(cwd, n)).filter((p) => existsSync(p))
  if (found.length > 1) {
    r.add({
      key: 'config',
      source: 'file',
      origin: `folder ${cwd}`,
      expected: `at most one of ${schema.options.configFileNames.join(', ')}`,
      received: found.map((p) => basename(p)).join(', '),
    })
    return undefined
  }
  return found[0]
}

/** Loads, merges and checks a schema's configuration (see the module comment). Never throws for a bad value. */
export async function load<D extends KeyDefs>(schema: ConfigSchema<D>, input: LoadInput = {}, hooks: LoadHooks = {}): Promise<LoadResult<D>> {
  const s = schema as unknown as ConfigSchema<KeyDefs>
  const argv = input.argv ?? process.argv.slice(2)
  const env = input.env ?? process.env
  const cwd = resolve(input.cwd ?? process.cwd())
  const { configEnv } = s.options
  const r = new Reporter()
  const textCtx: Ctx = { baseDir: cwd }

  const parsed = parseArgv(s, r, argv, textCtx)
  const envLayer = readEnv(s, r, env, textCtx)

  let configFile: string | undefined
  let fileOrigin: string
  const envConfig = env[configEnv]
  if (parsed.config !== undefined) {
    configFile = parsed.config.path
    fileOrigin = `file ${configFile} (from ${parsed.config.origin})`
  } else if (envConfig !== undefined && envConfig.trim() !== '') {
    configFile = resolve(cwd, envConfig)
    fileOrigin = `file ${configFile} (from env ${configEnv})`
  } else {
    configFile = findConfigFile(s, r, cwd)
    fileOrigin = `file ${configFile}`
  }
  let fileLayer: Layer = new Map()
  if (configFile !== undefined) {
    const obj = await readFile(r, configFile, fileOrigin, env, cwd, hooks.importModule)
    if (obj !== undefined) fileLayer = readFileLayer(s, r, obj, configFile, fileOrigin)
  }

  if (hooks.fold !== undefined) for (const l of [fileLayer, envLayer, parsed.flags]) hooks.fold(r, l)

  // Merge: later wins.
  const values: Layer = new Map()
  for (const spec of s.specs) {
    if (spec.shorthand === true) continue
    const key = spec.key
    const entry = parsed.flags.get(key) ?? envLayer.get(key) ?? fileLayer.get(key)
    if (entry !== undefined) {
      values.set(key, entry)
    } else if (spec.default !== undefined) {
      // A function is called per load; a value is copied, so a caller changing its config changes no default.
      const d = typeof spec.default === 'function' ? (spec.default as () => unknown)() : structuredClone(spec.default)
      if (spec.checkDefault === true) apply(r, values, spec, d, 'default', 'default', textCtx, false)
      else values.set(key, { value: d, source: 'default', origin: 'default' })
    } else if (spec.optional !== true) {
      // Required and absent. Skip when the source that should have set it (or the config file) already failed.
      if (!r.issues.some((i) => i.key === key || i.key === 'config')) {
        const where = [`set "${key}" in the config file`, spec.envName, spec.flagNames[0] === undefined ? undefined : `--${spec.flagNames[0]}`].filter(
          (x) => x !== undefined,
        )
        r.add({ key, source: 'default', origin: 'not set', expected: `a value: ${where.slice(0, -1).join(', ')} or ${where.at(-1)!} (${spec.expected})` })
      }
    }
  }

  hooks.crossCheck?.(r, values)

  const out: Record<string, unknown> = {}
  const sources: Record<string, ConfigSource> = {}
  for (const spec of s.specs) {
    if (spec.shorthand === true) continue
    out[spec.key] = values.get(spec.key)?.value
    sources[spec.key] = values.get(spec.key)?.source ?? 'default'
  }
  return { values: out as ConfigValues<D>, sources, entries: values, configFile, issues: r.issues, warnings: r.warnings }
}
