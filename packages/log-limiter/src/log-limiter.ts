/**
 * LogLimiter: bounds the log lines of anything that can repeat under a fault or bad input (a
 * storage outage, a malformed-frame storm, a handler that throws on every request). At most one
 * line per kind per `intervalMs` (default 10 s): the first line of a kind is printed at once
 * (with its error and stack), the ones after it within the window are counted, not printed. When
 * the window ends with lines counted, one summary line of the same level says how many
 * (`suppressed`) and carries the last one's `code` and message (`last`); the summary opens the
 * next window, so a fault that lasts gives one line per kind per window, never more. A count not
 * yet summarized (see `flush`) rides on the next printed line of the kind as `suppressed`.
 *
 * Zero dependencies (its own package, `@peony/log-limiter`; `@peony/broker-client` re-exports it),
 * so every package and thread can use it: the master (pino), worker threads (RuntimeLogger), the
 * egress thread.
 */

/** Where the limiter writes: pino's Logger and the worker runtime's RuntimeLogger both fit. */
export interface LimitedLogTarget {
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

/** The time source and timers of a limiter (the worker runtime's Clock fits). */
export interface LogLimiterClock {
  now(): number
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

/** Options of {@link LogLimiter}. */
export interface LogLimiterOptions {
  /** The window of one kind, in ms. Default 10,000. */
  intervalMs?: number | undefined
  /** Default: `Date.now()` and Node timers (unref'd: a pending summary never keeps a process alive). */
  clock?: LogLimiterClock | undefined
  /** Kinds remembered at most; past it, windows that ended are forgotten. Default 1,000. */
  maxKinds?: number | undefined
}

/** The level of a limited line. */
export type LimitedLevel = 'warn' | 'error'

interface Window {
  /** When the window ends (ms on the clock). */
  until: number
  /** Lines of the kind not printed in this window. */
  suppressed: number
  level: LimitedLevel
  /** The last line not printed: its code and message go on the summary. */
  lastCode: unknown
  lastMsg: string
  timer: unknown
}

const systemClock: LogLimiterClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
}

/** The message of a summary line. */
export const SUPPRESSED_MSG = 'similar log lines suppressed'

/** Rate-limits log lines per kind; see the module comment. */
export class LogLimiter {
  readonly intervalMs: number
  readonly #target: LimitedLogTarget
  readonly #clock: LogLimiterClock
  readonly #maxKinds: number
  readonly #windows = new Map<string, Window>()

  constructor(target: LimitedLogTarget, options: LogLimiterOptions = {}) {
    const ms = options.intervalMs ?? 10_000
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`intervalMs must be a finite number >= 0, got ${ms}`)
    this.#target = target
    this.intervalMs = ms
    this.#clock = options.clock ?? systemClock
    this.#maxKinds = options.maxKinds ?? 1000
  }

  /** A warning of kind `kind`: printed, or counted when one of the kind was printed less than `intervalMs` ago. */
  warn(kind: string, obj: object, msg: string): void {
    this.#log('warn', kind, obj, msg)
  }

  /** An error of kind `kind`: printed, or counted when one of the kind was printed less than `intervalMs` ago. */
  error(kind: string, obj: object, msg: string): void {
    this.#log('error', kind, obj, msg)
  }

  /** Prints the summary of every kind with lines counted and not yet summarized (at shutdown), and forgets every window. */
  flush(): void {
    const open = [...this.#windows]
    this.#windows.clear()
    for (const [kind, w] of open) {
      if (w.timer !== undefined) this.#clock.clearTimeout(w.timer)
      if (w.suppressed > 0) this.#summary(kind, w)
    }
  }

  #log(level: LimitedLevel, kind: string, obj: object, msg: string): void {
    const now = this.#clock.now()
    const w = this.#windows.get(kind)
    if (w !== undefined && now < w.until) {
      w.suppressed++
      w.level = level
      w.lastCode = (obj as { code?: unknown }).code
      w.lastMsg = msg
      if (w.timer === undefined) w.timer = this.#arm(kind, w, w.until - now)
      return
    }
    const carried = w?.suppressed ?? 0
    if (w?.timer !== undefined) this.#clock.clearTimeout(w.timer)
    if (w === undefined && this.#windows.size >= this.#maxKinds) this.#prune(now)
    this.#windows.set(kind, { until: now + this.intervalMs, suppressed: 0, level, lastCode: undefined, lastMsg: '', timer: undefined })
    this.#target[level](carried > 0 ? { ...obj, suppressed: carried } : obj, msg)
  }

  #arm(kind: string, w: Window, ms: number): unknown {
    const h = this.#clock.setTimeout(() => {
      w.timer = undefined
      if (this.#windows.get(kind) !== w || w.suppressed === 0) return
      // Node's timers may fire a millisecond before Date.now() says the window ended.
      const left = w.until - this.#clock.now()
      if (left > 0) {
        w.timer = this.#arm(kind, w, left)
        return
      }
      this.#summary(kind, w)
      // The summary is this kind's line of the new window.
      w.suppressed = 0
      w.until = this.#clock.now() + this.intervalMs
    }, ms)
    ;(h as { unref?: () => void } | null)?.unref?.()
    return h
  }

  #summary(kind: string, w: Window): void {
    const obj = { ...(w.lastCode === undefined ? {} : { code: w.lastCode }), kind, suppressed: w.suppressed, windowMs: this.intervalMs, last: w.lastMsg }
    this.#target[w.level](obj, SUPPRESSED_MSG)
  }

  /** Forgets the windows that ended and hold nothing to summarize; all of them if none did. */
  #prune(now: number): void {
    for (const [kind, w] of this.#windows) if (now >= w.until && w.timer === undefined) this.#windows.delete(kind)
    if (this.#windows.size >= this.#maxKinds) this.flush()
  }
}
