/**
 * Rate-limited logging for things a peer can trigger at will (malformed frames, refusals): at
 * most `burst` lines per key per `intervalMs`, then one summary line with the number suppressed.
 * Log output stays bounded however fast the bad input comes.
 */
import type { Logger } from 'pino'

export class RateLimitedLog {
  private readonly windows = new Map<string, { start: number; count: number; suppressed: number }>()
  private readonly logger: Logger
  private readonly burst: number
  private readonly intervalMs: number
  constructor(logger: Logger, burst = 10, intervalMs = 10_000) {
    this.logger = logger
    this.burst = burst
    this.intervalMs = intervalMs
  }

  warn(key: string, obj: object, msg: string): void {
    const now = Date.now()
    let w = this.windows.get(key)
    if (w === undefined || now - w.start >= this.intervalMs) {
      if (w !== undefined && w.suppressed > 0) {
        this.logger.warn({ key, suppressed: w.suppressed, windowMs: this.intervalMs }, 'similar log lines suppressed')
      }
      w = { start: now, count: 0, suppressed: 0 }
      this.windows.set(key, w)
      if (this.windows.size > 1000) this.windows.clear()
    }
    if (w.count < this.burst) {
      w.count++
      this.logger.warn(obj, msg)
    } else {
      w.suppressed++
    }
  }
}
