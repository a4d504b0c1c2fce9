/**
 * Maps the server configuration onto the master's options (`@peony/master`). Every value is
 * passed explicitly, so the server's documented defaults are the ones that apply.
 */
import type { MasterInput } from '@peony/master'
import type { Logger } from 'pino'
import type { ServerConfig } from './config.ts'

/** The master's `storage` option: which driver its storage thread opens. */
export type StorageInput = NonNullable<MasterInput['storage']>
/** The master's `sessions` option: write-behind, eviction and load settings. */
export type SessionsInput = NonNullable<MasterInput['sessions']>

/** The storage the master opens for a configuration. */
export function toStorageInput(config: Pick<ServerConfig, 'storage' | 'storagePath' | 'fenceCacheSize' | 'redisUrl' | 'redisPrefix'>): StorageInput {
  switch (config.storage) {
    case 'leveldb':
      return { driver: 'leveldb', location: config.storagePath, fenceCacheSize: config.fenceCacheSize }
    case 'redis':
      return { driver: 'redis', url: config.redisUrl, prefix: config.redisPrefix }
    case 'memory':
      return { driver: 'memory' }
  }
}

/** The session settings for a configuration (`sessionMemoryBudgetMb` in MiB → bytes). */
export function toSessionsInput(config: ServerConfig): SessionsInput {
  return {
    flushIntervalMs: config.flushIntervalMs,
    gateIntervalMs: config.gateIntervalMs,
    maxUnflushedAgeMs: config.maxUnflushedAgeMs,
    flushBatchSize: config.flushBatchSize,
    loadTimeoutMs: config.sessionLoadTimeoutMs,
    idleTimeoutMs: config.sessionIdleTimeoutMs,
    closeGraceMs: config.sessionCloseGraceMs,
    memoryBudgetBytes: config.sessionMemoryBudgetMb * 1024 * 1024,
    maxSessions: config.maxSessions,
  }
}

/** The master's input for a loaded configuration; `logger` is added when given. */
export function toMasterInput(config: ServerConfig, logger?: Logger): MasterInput {
  return {
    serverId: config.serverId,
    appModule: config.app,
    intakeEndpoints: [...config.intakeEndpoints],
    maxFrameBytes: config.maxFrameBytes,
    forwarderEndpoint: config.forwarderEndpoint,
    egressAck: config.egressAck,
    egressBufferMax: config.egressBufferMax,
    groups: config.groups.map((g) => ({ id: g.id, count: g.count })),
    router: config.router,
    queueMaxSize: config.queueMaxSize,
    maxQueueWaitMs: config.maxQueueWaitMs,
    claimedMaxSize: config.claimedMaxSize,
    laneMaxInFlight: config.laneMaxInFlight,
    laneKeepIdle: config.laneKeepIdle,
    shards: config.shards,
    workTimeoutMs: config.workTimeoutMs,
    blockedTimeoutMs: config.blockedTimeoutMs,
    stopTimeoutMs: config.stopTimeoutMs,
    workerCloseTimeoutMs: config.workerCloseTimeoutMs,
    respawnMinDelayMs: config.respawnMinDelayMs,
    spareWorkers: config.spareWorkers,
    respawnMaxDelayMs: config.respawnMaxDelayMs,
    resourceLimits: config.workerResourceLimits === undefined ? undefined : { ...config.workerResourceLimits },
    storage: toStorageInput(config),
    sessions: toSessionsInput(config),
    logger,
  }
}
