/**
 * The one line the server prints once it accepts tasks. Scripts and tests wait for it, so its
 * shape is stable: `peony ready: ` then space-separated `key=value` pairs.
 */
import { redactUrl } from '@peony/config'
import type { ServerConfig } from './config.ts'

/** What the master reports once started. */
export interface ReadyInfo {
  /** The bound intake endpoints (a `*` port resolved to the real one). */
  intakeEndpoints: string[]
  /** Worker threads started. */
  workers: number
}

/** `leveldb:<dir>`, `redis:<url>` (password hidden) or `memory`. */
export function describeStorage(config: Pick<ServerConfig, 'storage' | 'storagePath' | 'redisUrl'>): string {
  switch (config.storage) {
    case 'leveldb':
      return `leveldb:${config.storagePath}`
    case 'redis':
      return `redis:${redactUrl(config.redisUrl)}`
    case 'memory':
      return 'memory'
  }
}

/**
 * `peony ready: server_id=… intake=tcp://…[,…] forwarder=tcp://… workers=N (groups 1:2,2:1) storage=leveldb:/… app=…`
 */
export function formatReadyLine(
  config: Pick<ServerConfig, 'serverId' | 'forwarderEndpoint' | 'groups' | 'app' | 'storage' | 'storagePath' | 'redisUrl'>,
  ready: ReadyInfo,
): string {
  const groups = config.groups.map((g) => `${String(g.id)}:${g.count}`).join(',')
  return `peony ready: server_id=${config.serverId} intake=${ready.intakeEndpoints.join(',')} forwarder=${config.forwarderEndpoint} workers=${ready.workers} (groups ${groups}) storage=${describeStorage(config)} app=${config.app}`
}
