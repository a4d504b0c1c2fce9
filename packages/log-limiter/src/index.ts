/**
 * @peony/log-limiter: bounds the log lines of anything that can repeat under a fault or bad
 * input. One line per kind per window, then a counted summary (docs/errors.md).
 */
export { LogLimiter, SUPPRESSED_MSG } from './log-limiter.ts'
export type { LimitedLogTarget, LogLimiterClock, LogLimiterOptions, LimitedLevel } from './log-limiter.ts'
