/**
 * Wiring only: `createPeonyServer(config)` builds the pino logger at the configured level and the
 * master, and nothing else. `start()` creates the LevelDB directory's parent when missing, then
 * starts the master (whose storage thread opens the storage). Process concerns (signals, exit
 * codes, the ready line) live in main.ts, so tests can run a server inside their own process.
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import pino, { type Logger } from 'pino'
import { createMaster, type Master } from '@peony/master'
import { describeConfig, type ServerConfig } from './config.ts'
import { toMasterInput } from './master-input.ts'
import { describeStorage, type ReadyInfo } from './ready-line.ts'

/** Options of createPeonyServer. */
export interface PeonyServerOptions {
  /** A logger to use instead of the default one (JSON to stdout at `config.logLevel`). */
  logger?: Logger | undefined
}

/** A configured server: the master plus its logger. */
export interface PeonyServer {
  readonly config: ServerConfig
  readonly logger: Logger
  readonly master: Master
  /**
   * Opens the storage, binds intake, connects egress, starts every worker; resolves once tasks
   * are accepted. Rejects with PEONY_STORAGE_OPEN_FAILED when the storage cannot be opened (a
   * LevelDB directory in use by another server: the cause is PEONY_STORAGE_LOCKED).
   */
  start(): Promise<ReadyInfo>
  /** Graceful stop (refuse, drain, close intake, stop workers and write their sessions, close the storage, flush egress). Idempotent. */
  stop(reason?: string): Promise<void>
}

/** Creates the logger and the master for a loaded configuration. Nothing starts until `start()`. */
export function createPeonyServer(config: ServerConfig, options: PeonyServerOptions = {}): PeonyServer {
  const logger = options.logger ?? pino({ name: 'peony', level: config.logLevel, base: { pid: process.pid, serverId: config.serverId } })
  const master = createMaster(toMasterInput(config, logger))
  return {
    config,
    logger,
    master,
    async start() {
      for (const w of config.warnings) logger.warn(w)
      if (config.sources.serverId === 'default') {
        logger.info({ serverId: config.serverId }, 'serverId defaults to the host name: set PEONY_SERVER_ID when several servers run or host names change')
      }
      logger.debug({ config: describeConfig(config), sources: config.sources }, 'configuration')
      // LevelDB creates its own directory, not the folders above it.
      if (config.storage === 'leveldb') mkdirSync(dirname(config.storagePath), { recursive: true })
      logger.info({ storage: describeStorage(config), ...(config.storage === 'redis' ? { redisPrefix: config.redisPrefix } : {}) }, 'storage')
      if (config.storage === 'memory') logger.warn('storage is memory: every session is lost when the server stops')
      return master.start()
    },
    stop(reason) {
      return master.stop(reason)
    },
  }
}
