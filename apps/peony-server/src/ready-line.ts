/**
 * The one line the server prints once it accepts tasks. Scripts and tests wait for it, so its
 * shape is stable: `peony ready: ` then space-separated `key=value` pairs.
 */
import type { ServerConfig } from './config.ts'

/** What the master reports once started. */
export interface ReadyInfo {
  /** The bound intake endpoints (a `*` port resolved to the real one). */
  intakeEndpoints: string[]
  /** Worker threads started. */
  workers: number
}

/**
 * `peony ready: server_id=… intake=tcp://…[,…] forwarder=tcp://… workers=N (groups 1:2,2:1) app=…`
 */
export function formatReadyLine(config: Pick<ServerConfig, 'serverId' | 'forwarderEndpoint' | 'groups' | 'app'>, ready: ReadyInfo): string {
  const groups = config.groups.map((g) => `${String(g.id)}:${g.count}`).join(',')
  return `peony ready: server_id=${config.serverId} intake=${ready.intakeEndpoints.join(',')} forwarder=${config.forwarderEndpoint} workers=${ready.workers} (groups ${groups}) app=${config.app}`
}
