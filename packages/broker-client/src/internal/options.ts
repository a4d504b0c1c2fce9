/** Option checks shared by the sockets of the wire layer (programmer errors: RangeError, no code). */

/** A positive safe integer, or `dflt` when absent (required when `dflt` is undefined). */
export function positiveInt(v: unknown, name: string, dflt?: number): number {
  if (v === undefined && dflt !== undefined) return dflt
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${String(v)}`)
  return v
}

/** The `lingerMs` of a `close()` call: a non-negative number, 0 when absent. */
export function lingerOf(options: { lingerMs?: number }): number {
  const lingerMs = options.lingerMs ?? 0
  if (typeof lingerMs !== 'number' || !(lingerMs >= 0)) throw new RangeError(`lingerMs must be a non-negative number, got ${String(lingerMs)}`)
  return lingerMs
}
