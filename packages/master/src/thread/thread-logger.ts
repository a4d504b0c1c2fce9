/**
 * The logger of worker threads: pino-compatible JSON lines (`level` numbers, `time`, `msg`,
 * bindings), written synchronously to stdout. pino itself costs ~45 ms to load, paid again by
 * every respawned worker; this costs nothing.
 */
import { writeSync } from 'node:fs'
import type { RuntimeLogger } from '@peony/worker/host'

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity } as const
type LevelName = keyof typeof LEVELS

/** One object as JSON for a log line: bigints as strings, errors with their cause chain. Exported for tests. */
export function serialize(obj: object): string {
  // An error seen once in this line is not written again: a cause chain that loops (err.cause =
  // err, or a cycle further down) would otherwise recurse until the stack overflows.
  const seen = new WeakSet<Error>()
  return JSON.stringify(obj, (_k, v: unknown) => {
    if (typeof v === 'bigint') return v.toString()
    // The cause chain goes too (nested errors pass through this replacer): a storage error's
    // cause is the driver's own error, which the message no longer repeats.
    if (v instanceof Error) {
      if (seen.has(v)) return '[circular]'
      seen.add(v)
      return { type: v.name, message: v.message, stack: v.stack, code: (v as { code?: unknown }).code, cause: v.cause }
    }
    return v
  })
}

/** A logger at `level` (a pino level name; unknown names mean info) with `base` in every line. */
export function createThreadLogger(level: string, base: Record<string, unknown>): RuntimeLogger {
  const min = LEVELS[level as LevelName] ?? LEVELS.info
  const prefix = serialize(base).slice(1, -1)
  const write = (n: number, obj: object, msg?: string): void => {
    if (n < min) return
    const body = serialize(obj).slice(1, -1)
    const line = `{"level":${n},"time":${Date.now()},"pid":${process.pid},${prefix}${body ? ',' + body : ''}${msg === undefined ? '' : ',"msg":' + JSON.stringify(msg)}}\n`
    try {
      writeSync(1, line)
    } catch {
      // stdout closed: nothing to do
    }
  }
  return {
    debug: (obj, msg) => write(20, obj, msg),
    info: (obj, msg) => write(30, obj, msg),
    warn: (obj, msg) => write(40, obj, msg),
    error: (obj, msg) => write(50, obj, msg),
  }
}
