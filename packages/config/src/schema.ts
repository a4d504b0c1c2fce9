/**
 * A configuration schema: the keys (see keys.ts) plus how a process names its sources. From it
 * come the merged, checked values (`load`, in loader.ts), `--help`, the docs' markdown table, a
 * JSON Schema for the config file, and the checks of an options object (`checkOptions`).
 */
import type { TSchema } from 'typebox'
import { Value } from 'typebox/value'
import type { KeyDef, ValueOf } from './keys.ts'
import { checkKey } from './keys.ts'
import { Bad, show, type Ctx } from './values.ts'

/** Where a configuration value came from; later sources win: default ← file ← env ← flag. */
export type ConfigSource = 'default' | 'file' | 'env' | 'flag'

/** One problem found in the configuration. */
export interface ConfigIssue {
  /** The configuration key (`queueMaxSize`), or the name as written when it is unknown (`QUEUE_MAXSIZE`). */
  key: string
  source: ConfigSource
  /** Human-readable origin: `file /srv/peony.config.json`, `env PEONY_QUEUE_MAX_SIZE`, `flag --workers`. */
  origin: string
  /** What a valid value looks like (`an integer ≥ 1`). */
  expected: string
  /** The offending value, shortened, when there is one. */
  received?: string | undefined
  /** The closest known name, for an unknown name or a value near a valid one. */
  suggestion?: string | undefined
  /** The whole line, as printed. */
  message: string
}

/** Keys of a schema by name. */
// biome-ignore lint/suspicious/noExplicitAny: a key's value type varies per key; each KeyDef keeps its own
export type KeyDefs = Record<string, KeyDef<any>>

/** The resolved values of a schema's keys. */
export type ConfigValues<D extends KeyDefs> = { [K in keyof D]: ValueOf<D[K]> }

/** How a process names its configuration sources. */
export interface SchemaOptions {
  /** Program name, for help and warnings (`peony-server`). */
  program: string
  /** Prefix of the environment variables (`PEONY_`). */
  envPrefix: string
  /** Environment variable naming the config file (`PEONY_CONFIG`). */
  configEnv: string
  /** Files looked for in the working directory when neither `--config` nor `configEnv` is given. */
  configFileNames: readonly string[]
  /** Other names of keys (an older program's), suggested when found in a config file. */
  aliases?: Readonly<Record<string, string>> | undefined
}

/** A key with its derived names. */
export interface KeySpec extends KeyDef<unknown> {
  key: string
  /** Environment variable, when settable from the environment. */
  envName: string | undefined
  /** Flags without `--`, canonical first; empty when not settable by flag. */
  flagNames: string[]
  defaultText: string
}

/** One documented configuration key. */
export interface ConfigKeyInfo<K extends string = string> {
  key: K
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

export const toSnake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()
export const toKebab = (k: string): string => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

/** A configuration schema; see the module comment. */
export class ConfigSchema<D extends KeyDefs> {
  readonly keys: D
  readonly options: SchemaOptions
  readonly specs: readonly KeySpec[]
  readonly byKey: ReadonlyMap<string, KeySpec>
  readonly byEnv: ReadonlyMap<string, KeySpec>
  readonly byFlag: ReadonlyMap<string, KeySpec>

  constructor(keys: D, options: SchemaOptions) {
    this.keys = keys
    this.options = options
    this.specs = Object.entries(keys).map(([key, d]) => {
      const textual = d.text !== undefined
      return {
        ...(d as KeyDef<unknown>),
        key,
        envName: textual && d.env !== false ? `${options.envPrefix}${toSnake(key)}` : undefined,
        flagNames: textual ? [...(d.flags ?? [toKebab(key)])] : [],
        defaultText: d.defaultText ?? (d.default === undefined || typeof d.default === 'function' ? '—' : show(d.default).replace(/^"(.*)"$/, '$1')),
      }
    })
    this.byKey = new Map(this.specs.map((s) => [s.key, s]))
    this.byEnv = new Map(this.specs.filter((s) => s.envName !== undefined).map((s) => [s.envName!, s]))
    this.byFlag = new Map(this.specs.flatMap((s) => s.flagNames.map((f) => [f, s] as const)))
  }

  /** Every key with its environment variable, flags, default and meaning. */
  describe(): ConfigKeyInfo<Extract<keyof D, string>>[] {
    return this.specs.map((s) => ({
      key: s.key as Extract<keyof D, string>,
      env: s.envName,
      flags: s.flagNames.map((f) => `--${f}`),
      default: s.defaultText,
      expected: s.expected,
      doc: s.help ?? '',
    }))
  }

  /** The static defaults (keys whose default is a value, not a function). */
  defaults(): Partial<ConfigValues<D>> {
    const out: Record<string, unknown> = {}
    for (const s of this.specs) if (s.default !== undefined && typeof s.default !== 'function') out[s.key] = s.default
    return out as Partial<ConfigValues<D>>
  }

  /**
   * `--help`: a usage head, then every key (flag, placeholder, help line, and in brackets its
   * aliases, `--no-` form, environment variable and default), then a foot.
   */
  help(text: { usage: string; intro: readonly string[]; options: readonly string[]; footer: readonly string[] }): string {
    const col = 31
    const lines = [`Usage: ${text.usage}`, '', ...text.intro, '', 'Options:', ...text.options]
    for (const s of this.specs) {
      const flag = s.flagNames[0]
      const head = flag === undefined ? `  (config file) ${s.key}` : `  --${flag}${s.arg === undefined ? '' : ` ${s.arg}`}`
      const pad = head.length < col ? ' '.repeat(col - head.length) : '\n' + ' '.repeat(col)
      const extra = [
        s.flagNames.length > 1
          ? `alias ${s.flagNames
              .slice(1)
              .map((f) => `--${f}`)
              .join(', ')}`
          : '',
        s.boolean === true && flag !== undefined ? `--no-${flag} sets false` : '',
        s.envName !== undefined ? `env ${s.envName}` : '',
        `default ${s.defaultText}`,
      ].filter((x) => x !== '')
      lines.push(`${head}${pad}${s.help ?? ''}`, `${' '.repeat(col)}[${extra.join('; ')}]`)
    }
    if (text.footer.length > 0) lines.push('', ...text.footer)
    return lines.join('\n')
  }

  /**
   * The docs' table of keys, in markdown: key | env | flag | default | valid values | meaning.
   * `linkBase` is put before relative links to other docs (`protocol.md#…`), for a table placed
   * outside `docs/`.
   */
  markdownTable(opts: { linkBase?: string } = {}): string {
    const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ')
    const code = (s: string): string => `\`${s}\``
    const link = (s: string): string =>
      opts.linkBase === undefined
        ? s
        : s.replace(/\]\(([a-z][a-z0-9-]*\.md)(#[^)]*)?\)/g, (_m, file: string, hash: string | undefined) => `](${opts.linkBase}${file}${hash ?? ''})`)
    const rows = [
      '| key | env | flag | default | valid values | meaning |',
      '|---|---|---|---|---|---|',
      ...this.specs
        .map((s) =>
          [
            code(s.key),
            s.envName === undefined ? '—' : code(s.envName),
            s.flagNames.length === 0 ? '—' : s.flagNames.map((f) => code(`--${f}`)).join(', '),
            s.docs?.default ?? (s.defaultText === '—' ? '—' : code(s.defaultText)),
            (s.docs?.values ?? valuesOf(s)) + (s.docs?.valuesNote ?? ''),
            s.docs?.meaning ?? s.help ?? '',
          ]
            .map((c) => link(cell(c)))
            .join(' | '),
        )
        .map((r) => `| ${r} |`),
    ]
    return rows.join('\n')
  }

  /**
   * A JSON Schema (draft 2020-12) for a JSON config file: every key with a JSON form, its
   * description, default and range; `$schema` and `//…` comment keys allowed, nothing else.
   */
  jsonSchema(meta: { title: string; description?: string; id?: string }): Record<string, unknown> {
    const properties: Record<string, unknown> = { $schema: { type: 'string', description: 'The JSON Schema of this file (for editors).' } }
    for (const s of this.specs) {
      if (s.schema === undefined) continue
      const p: Record<string, unknown> = JSON.parse(JSON.stringify(s.schema)) as Record<string, unknown>
      if (s.help !== undefined) p.description = s.help
      if (s.default !== undefined && typeof s.default !== 'function') p.default = s.default
      properties[s.key] = p
    }
    return {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      ...(meta.id !== undefined ? { $id: meta.id } : {}),
      title: meta.title,
      ...(meta.description !== undefined ? { description: meta.description } : {}),
      type: 'object',
      properties,
      patternProperties: { '^//': {} },
      additionalProperties: false,
    }
  }

  /**
   * Checks an options object against the keys it shares with this schema (those present and not
   * undefined): each problem as `key`, `expected`, `received`. For a library's own option checks.
   */
  checkOptions(options: Readonly<Record<string, unknown>>, ctx: Ctx = { baseDir: process.cwd() }): { key: string; expected: string; received: string }[] {
    const out: { key: string; expected: string; received: string }[] = []
    for (const s of this.specs) {
      const v = options[s.key]
      if (v === undefined) continue
      try {
        checkKey(s, v, ctx)
      } catch (err) {
        if (!(err instanceof Bad)) throw err
        out.push({ key: `${s.key}${err.path ?? ''}`, expected: err.expected, received: show(err.hasReceived ? err.received : v) })
      }
    }
    return out
  }
}

/** The valid values of a key for the docs: an integer's range from its JSON Schema, else `expected`. */
function valuesOf(s: KeySpec): string {
  const j = s.schema as { type?: unknown; minimum?: number; maximum?: number } | undefined
  if (j?.type !== 'integer' || j.minimum === undefined) return s.expected
  const unit = s.unit === undefined ? '' : ` (${s.unit})`
  return j.maximum === undefined ? `integer ≥ ${j.minimum}${unit}` : `${j.minimum}–${j.maximum}${unit}`
}

/** A schema from keys and source names. */
export function defineSchema<D extends KeyDefs>(keys: D, options: SchemaOptions): ConfigSchema<D> {
  return new ConfigSchema(keys, options)
}

/** The text between `<!-- begin NAME -->` and `<!-- end NAME -->` replaced (markers kept); throws when they are missing. */
export function replaceBetweenMarkers(doc: string, name: string, content: string): string {
  const begin = `<!-- begin ${name} -->`
  const end = `<!-- end ${name} -->`
  const i = doc.indexOf(begin)
  const j = doc.indexOf(end)
  if (i === -1 || j === -1 || j < i) throw new Error(`markers ${begin} … ${end} not found`)
  return `${doc.slice(0, i + begin.length)}\n${content}\n${doc.slice(j)}`
}

/** Whether a value matches a plain JSON Schema (as `jsonSchema()` emits or a file holds), checked by TypeBox. */
export function matchesJsonSchema(schema: Readonly<Record<string, unknown>>, value: unknown): boolean {
  return Value.Check(schema as unknown as TSchema, value)
}
