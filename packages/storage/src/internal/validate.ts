/**
 * Argument checks shared by AbstractStorage's public methods. Keys and values get coded errors
 * (the contract names them); malformed structures (an op without a type, a generation that is not
 * a positive integer) are programmer errors and throw a plain TypeError.
 */
import { StorageError, StorageErrorCode } from '../errors.ts'
import type { BatchOp, FencedWrite } from '../storage.ts'

/** The longest key, in UTF-8 bytes (the key as given, before any prefix). */
export const MAX_KEY_BYTES = 1024

/** Throws PEONY_STORAGE_INVALID_KEY unless `key` is a non-empty string of ≤ 1024 UTF-8 bytes without '\0'. */
export function checkKey(key: unknown, what = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new StorageError(StorageErrorCode.INVALID_KEY, `${what} must be a non-empty string (got ${describe(key)})`)
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes, so short keys need no byte count.
  if (key.length > MAX_KEY_BYTES / 3 && Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new StorageError(StorageErrorCode.INVALID_KEY, `${what} is longer than ${MAX_KEY_BYTES} UTF-8 bytes`)
  }
  if (key.includes('\0')) throw new StorageError(StorageErrorCode.INVALID_KEY, `${what} must not contain '\\0'`)
}

/** Throws unless `keys` is an array (TypeError) of valid keys (PEONY_STORAGE_INVALID_KEY). */
export function checkKeys(keys: unknown): asserts keys is readonly string[] {
  checkArray(keys, 'keys')
  for (const k of keys) checkKey(k)
}

/** True when `value` is a Uint8Array (a Buffer is one), also one made in another realm. */
export function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array || (ArrayBuffer.isView(value) && (value as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === 'Uint8Array')
}

/** Throws PEONY_STORAGE_INVALID_VALUE unless `value` is a Uint8Array. */
export function checkValue(value: unknown): asserts value is Uint8Array {
  if (!isBytes(value)) throw new StorageError(StorageErrorCode.INVALID_VALUE, `value must be a Uint8Array (got ${describe(value)})`)
}

/** Throws a TypeError unless `list` is an array. */
export function checkArray(list: unknown, what: string): asserts list is readonly unknown[] {
  if (!Array.isArray(list)) throw new TypeError(`${what} must be an array (got ${describe(list)})`)
}

/** Checks one batch op; `scope` (a fence, checked already) restricts its key to the fence or `fence + '/…'`. */
export function checkOp(op: unknown, scope?: string): asserts op is BatchOp {
  if (typeof op !== 'object' || op === null) throw new TypeError(`a batch op must be an object (got ${describe(op)})`)
  const { type, key: k } = op as { type?: unknown; key?: unknown }
  // A key that is its (checked) fence needs no second check.
  if (k !== scope || scope === undefined) checkKey(k)
  const key = k as string
  if (type === 'put') checkValue((op as { value?: unknown }).value)
  else if (type !== 'del') throw new TypeError(`a batch op's type must be 'put' or 'del' (got ${describe(type)})`)
  if (scope !== undefined && key !== scope && !(key.length > scope.length && key.charCodeAt(scope.length) === 47 && key.startsWith(scope))) {
    throw new StorageError(
      StorageErrorCode.INVALID_KEY,
      `key ${JSON.stringify(key)} is outside its fence's scope (the fence ${JSON.stringify(scope)} or keys starting with ${JSON.stringify(`${scope}/`)})`,
    )
  }
}

/** Checks one fenced write: its fence, its generation (a positive safe integer) and its scoped ops. */
export function checkWrite(write: unknown): asserts write is FencedWrite {
  if (typeof write !== 'object' || write === null) throw new TypeError(`a fenced write must be an object (got ${describe(write)})`)
  const { fence, generation, ops, handle } = write as { fence?: unknown; generation?: unknown; ops?: unknown; handle?: unknown }
  checkKey(fence, 'fence')
  checkGeneration(generation)
  if (handle !== undefined && (typeof handle !== 'number' || !Number.isSafeInteger(handle) || handle < 0)) {
    throw new TypeError(`a fenced write's handle must be a non-negative integer or undefined (got ${describe(handle)})`)
  }
  checkArray(ops, "a fenced write's ops")
  for (const op of ops) checkOp(op, fence)
}

/** Throws a TypeError unless `g` is a positive safe integer (acquire() never returns anything else). */
export function checkGeneration(g: unknown): asserts g is number {
  if (typeof g !== 'number' || !Number.isSafeInteger(g) || g < 1) throw new TypeError(`a generation must be a positive integer (got ${describe(g)})`)
}

/** Throws a TypeError unless `prefix` is a string without '\0'. */
export function checkPrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string' || prefix.includes('\0')) throw new TypeError(`prefix must be a string without '\\0' (got ${describe(prefix)})`)
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (typeof v === 'string') return v.length > 40 ? `a string of length ${v.length}` : JSON.stringify(v)
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object'
  return typeof v === 'number' ? String(v) : typeof v
}
