/**
 * Loggers for the runtime when the host gives none: `consoleLogger` (warn and error to stderr as
 * one JSON line), `silentLogger`, and `createMemoryLogger` (keeps entries; the test harness uses
 * it so tests can assert on warnings). Production hosts pass a pino logger.
 */
import type { RuntimeLogger } from './runtime/contract.ts'

/** A log level of RuntimeLogger. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** One entry kept by a memory logger. */
export interface LogEntry {
  level: LogLevel
  obj: object
  msg: string | undefined
}

function safeJson(obj: object, level: LogLevel, msg: string | undefined): string {
  try {
    return JSON.stringify({ level, msg, ...obj }, (_k, v: unknown) => {
      if (typeof v === 'bigint') return v.toString()
      if (v instanceof Error) return { name: v.name, message: v.message, code: (v as { code?: unknown }).code, stack: v.stack }
      return v
    })
  } catch {
    return JSON.stringify({ level, msg })
  }
}

/** Writes warn and error entries to stderr as JSON lines; drops debug and info. */
export const consoleLogger: RuntimeLogger = Object.freeze({
  debug(): void {},
  info(): void {},
  warn(obj: object, msg?: string): void {
    console.error(safeJson(obj, 'warn', msg))
  },
  error(obj: object, msg?: string): void {
    console.error(safeJson(obj, 'error', msg))
  },
})

/** Drops everything. */
export const silentLogger: RuntimeLogger = Object.freeze({
  debug(): void {},
  info(): void {},
  warn(): void {},
  error(): void {},
})

/** A logger that keeps its entries in `entries`. */
export interface MemoryLogger extends RuntimeLogger {
  readonly entries: LogEntry[]
}

/** Creates a logger that keeps every entry in memory. */
export function createMemoryLogger(): MemoryLogger {
  const entries: LogEntry[] = []
  const at =
    (level: LogLevel) =>
    (obj: object, msg?: string): void => {
      entries.push({ level, obj, msg })
    }
  return { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}
