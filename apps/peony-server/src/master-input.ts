/**
 * Maps the server configuration onto the master's options (`@peony/master`). Every value is
 * passed explicitly, so the server's documented defaults are the ones that apply.
 */
import type { MasterInput } from '@peony/master'
import type { Logger } from 'pino'
import type { ServerConfig } from './config.ts'

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
    claimedMaxSize: config.claimedMaxSize,
    laneMaxInFlight: config.laneMaxInFlight,
    shards: config.shards,
    workTimeoutMs: config.workTimeoutMs,
    blockedTimeoutMs: config.blockedTimeoutMs,
    stopTimeoutMs: config.stopTimeoutMs,
    workerCloseTimeoutMs: config.workerCloseTimeoutMs,
    respawnMinDelayMs: config.respawnMinDelayMs,
    spareWorkers: config.spareWorkers,
    respawnMaxDelayMs: config.respawnMaxDelayMs,
    resourceLimits: config.workerResourceLimits === undefined ? undefined : { ...config.workerResourceLimits },
    logger,
  }
}
