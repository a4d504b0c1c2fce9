/**
 * Errors of the server app: one code, `PEONY_CONFIG_INVALID`, raised by the configuration loader
 * with every problem it found (not only the first), each naming the key, where the value came
 * from and what was expected.
 */
import { PeonyError } from '@peony/protocol'

/** Codes raised by apps/peony-server. */
export const ServerErrorCode = {
  /** The configuration (file, environment or flags) is unreadable, has unknown keys or invalid values. */
  CONFIG_INVALID: 'PEONY_CONFIG_INVALID',
} as const
export type ServerErrorCode = (typeof ServerErrorCode)[keyof typeof ServerErrorCode]

/** Where a configuration value came from; later sources win: default ← file ← env ← flag. */
export type ConfigSource = 'default' | 'file' | 'env' | 'flag'

/** One problem found in the configuration. */
export interface ConfigIssue {
  /** The configuration key (`queueMaxSize`), or the name as written when it is unknown (`QUEUE_MAXSIZE`). */
  key: string
  source: ConfigSource
  /** Human-readable origin: `file /srv/peony.config.json`, `env PEONY_QUEUE_MAX_SIZE`, `flag --workers`. */
  origin: string
  /** What a valid value looks like (`an integer ≥ 1`). */
  expected: string
  /** The offending value, shortened, when there is one. */
  received?: string | undefined
  /** The closest known key, for an unknown key. */
  suggestion?: string | undefined
  /** The whole line, as printed. */
  message: string
}

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
