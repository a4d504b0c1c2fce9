/**
 * @peony/config: one schema per process gives its configuration's types, defaults, ranges, the
 * loader (defaults ← file ← `PEONY_*` ← flags, every problem at once), `--help`, the docs' table
 * and a JSON Schema for its config file. Used by peony-server and @peony/master's option checks.
 */
export { defineSchema, ConfigSchema, matchesJsonSchema, replaceBetweenMarkers, toKebab, toSnake } from './schema.ts'
export type { ConfigIssue, ConfigSource, ConfigValues, ConfigKeyInfo, KeyDefs, KeySpec, SchemaOptions } from './schema.ts'
export { integer, boolean, oneOf, string, custom, optional, schemaCheck, checkKey } from './keys.ts'
export type { KeyDef, KeyDocs, ValueOf } from './keys.ts'
export { load, wantsHelp, Reporter } from './loader.ts'
export type { Entry, Layer, LoadInput, LoadHooks, LoadResult, ConfigModuleContext } from './loader.ts'
export { closest, levenshtein, nameDistance } from './suggest.ts'
export {
  Bad,
  MAX_TIMER_MS,
  BOOLEAN_EXPECTED,
  IPC_PATH_MAX_BYTES,
  isPlainObject,
  show,
  intFromText,
  boolFromText,
  jsonFromText,
  toPath,
  existingFile,
  directoryPath,
  redactUrl,
  parseEndpoint,
  parseEndpointList,
  endpointExpected,
} from './values.ts'
export type { Ctx, EndpointMode, ParsedEndpoint } from './values.ts'
export { default as Type } from 'typebox'
