/**
 * One configuration key: its JSON Schema (a TypeBox schema: type, range, enum), its default, how
 * it is read from text and checked, and what the help and the docs say about it. Constructors
 * derive the rest from the range (`integer(1, 65_536)` is the JSON Schema, the check, the text
 * parser and the "expected" of every message), so a range is written once.
 */
import Type, { type TSchema } from 'typebox'
import { Value } from 'typebox/value'
import { closest } from './suggest.ts'
import { Bad, BOOLEAN_EXPECTED, boolFromText, intFromText, type Ctx } from './values.ts'

/** The markdown cells of a key's row in the docs' table (each defaults to the plain form). */
export interface KeyDocs {
  /** Default column (markdown); default: the `defaultText` in backticks. */
  default?: string
  /** Valid values column (markdown); default: the range of an integer key, else `expected`. */
  values?: string
  /** Appended to the valid values (`, ≤ \`claimedMaxSize\``). */
  valuesNote?: string
  /** Meaning column (markdown); default: `help`. */
  meaning?: string
}

/** A configuration key whose resolved value has type T. */
export interface KeyDef<T> {
  /** The value's JSON Schema in a config file; undefined when it has no JSON form (a function). */
  schema: TSchema | undefined
  /** Default value (copied at each load; in the JSON Schema); a function is called per load (not in the JSON Schema). Absent: required, unless `optional`. */
  default?: T | (() => T) | undefined
  /** Absent and without default: undefined (T includes undefined). */
  optional?: boolean | undefined
  /** The default goes through `check` against the working directory (a relative default path). */
  checkDefault?: boolean | undefined
  /** Default as documented (help, docs); default: the default as JSON. */
  defaultText?: string | undefined
  /** What a valid value looks like, for messages, help and the docs. */
  expected: string
  /** Text (env, flag) → value, before `check`; absent: file only (no env, no flag). Throws Bad. */
  text?: ((raw: string) => unknown) | undefined
  /** Value → normalized value; throws Bad. Default: the value must match `schema`. */
  check?: ((value: unknown, ctx: Ctx) => T) | undefined
  /** Settable from the environment (default true when `text` exists). */
  env?: boolean | undefined
  /** Flag names without `--`, canonical first. Default: the key in kebab case, when `text` exists. */
  flags?: readonly string[] | undefined
  /** The flag may repeat; the values are joined with commas. */
  repeatable?: boolean | undefined
  /** A boolean flag: `--x` is true, `--no-x` false. */
  boolean?: boolean | undefined
  /** Placeholder in `--help`. */
  arg?: string | undefined
  /** Unit of an integer key (`ms`), for messages and the docs. */
  unit?: string | undefined
  /** Folded into another key by the schema's `fold` (a shorthand): never in the resolved values. */
  shorthand?: boolean | undefined
  /** One line: what it means (help, JSON Schema description). */
  help?: string | undefined
  /** The docs' table cells. */
  docs?: KeyDocs | undefined
}

/** The resolved value type of a key. */
export type ValueOf<D> = D extends KeyDef<infer T> ? T : never

/** A key's value must match its schema (the default check). */
export function schemaCheck<T>(def: Pick<KeyDef<T>, 'schema' | 'expected'>, value: unknown): T {
  if (def.schema === undefined || !Value.Check(def.schema, value)) throw new Bad(def.expected)
  return value as T
}

/** Checks a value with the key's check (or its schema). */
export function checkKey<T>(def: KeyDef<T>, value: unknown, ctx: Ctx): T {
  return def.check !== undefined ? def.check(value, ctx) : schemaCheck(def, value)
}

type Meta<T> = Omit<KeyDef<T>, 'schema' | 'expected' | 'text' | 'check'> & { expected?: string }

/** An integer in [min, max] (`max` Number.MAX_SAFE_INTEGER: no upper bound); text may use `_` separators. */
export function integer(min: number, max: number, meta: Meta<number> = {}): KeyDef<number> {
  const { unit, ...rest } = meta
  const u = unit === undefined || unit === '' ? '' : ` (${unit})`
  const expected = max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}${u}` : `an integer from ${min} to ${max}${u}`
  const schema = max === Number.MAX_SAFE_INTEGER ? Type.Integer({ minimum: min }) : Type.Integer({ minimum: min, maximum: max })
  return {
    schema,
    expected,
    text: (raw) => intFromText(raw, meta.expected ?? expected),
    check: (v) => {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new Bad(meta.expected ?? expected)
      return v
    },
    ...rest,
    ...(unit !== undefined ? { unit } : {}),
    ...(meta.expected !== undefined ? { expected: meta.expected } : {}),
  }
}

/** A boolean; text accepts true/false, 1/0, yes/no, on/off; the flag is `--x` / `--no-x`. */
export function boolean(meta: Meta<boolean> = {}): KeyDef<boolean> {
  return { schema: Type.Boolean(), expected: BOOLEAN_EXPECTED, text: boolFromText, boolean: true, ...meta }
}

/** One of some strings (text is trimmed and lower-cased); a near miss gets a suggestion. */
export function oneOf<const V extends string>(values: readonly V[], meta: Meta<V> = {}): KeyDef<V> {
  const expected = meta.expected ?? `one of ${values.join(', ')}`
  return {
    schema: Type.Union(values.map((v) => Type.Literal(v))),
    expected,
    text: (raw) => raw.trim().toLowerCase(),
    check: (v) => {
      if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
        throw new Bad(expected, { suggestion: typeof v === 'string' ? closest(v, values) : undefined })
      }
      return v as V
    },
    ...meta,
  }
}

/** A string matching a JSON Schema (pattern, lengths); text is trimmed. */
export function string(schema: TSchema, meta: Meta<string> & { expected: string }): KeyDef<string> {
  return { schema, text: (raw) => raw.trim(), ...meta }
}

/** Any other key: the schema, check and text parser are given. */
export function custom<T>(def: KeyDef<T>): KeyDef<T> {
  return def
}

/** The same key, absent by default (its value type includes undefined). */
export function optional<T>(def: KeyDef<T>): KeyDef<T | undefined> {
  const { default: _d, ...rest } = def
  return { ...(rest as KeyDef<T | undefined>), optional: true }
}
