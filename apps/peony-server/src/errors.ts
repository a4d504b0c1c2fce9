/**
 * Errors of the server app: one code, `PEONY_CONFIG_INVALID`, raised by the configuration loader
 * with every problem it found (not only the first), each naming the key, where the value came
 * from and what was expected.
 */
import { PeonyError } from '@peony/protocol'
import type { ConfigIssue } from '@peony/config'

/** Codes raised by apps/peony-server. */
export const ServerErrorCode = {
  /** The configuration (file, environment or flags) is unreadable, has unknown keys or invalid values. */
  CONFIG_INVALID: 'PEONY_CONFIG_INVALID',
} as const
export type ServerErrorCode = (typeof ServerErrorCode)[keyof typeof ServerErrorCode]

/** Where a value came from and one problem found (defined in @peony/config, shared with other processes). */
export type { ConfigIssue, ConfigSource } from '@peony/config'

/** The configuration could not be loaded; `issues` lists every problem found. */
export class ConfigError extends PeonyError<typeof ServerErrorCode.CONFIG_INVALID> {
  override name = 'ConfigError'
  readonly issues: readonly ConfigIssue[]
  constructor(issues: readonly ConfigIssue[], options: ErrorOptions = {}) {
    const lines = issues.map((i) => `  - ${i.message}`).join('\n')
    super(ServerErrorCode.CONFIG_INVALID, `invalid configuration (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${lines}`, options)
    this.issues = issues
  }
}
