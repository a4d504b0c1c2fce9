/**
 * Routing keys and shards (protocol §1.2). The routing key is the uid when present, otherwise
 * the connection `(node_id, conn_id)`; a task with neither has no key and goes to the first
 * worker of its group. The master and the worker both use these functions, so a lane in the
 * master and a lane in the worker are the same thing.
 *
 * Shard hash (stable: storage and worker slots depend on it; changing it is a breaking change):
 *   fmix32 = MurmurHash3's 32-bit finalizer
 *   int uid u      → fmix32(lo32(u) XOR fmix32(hi32(u) XOR 0x9e3779b9))
 *   str uid s      → fmix32(FNV-1a-32 over the UTF-16 code units of s)
 *   connection     → fmix32(node_id XOR fmix32(lo32(conn_id) XOR fmix32(hi32(conn_id) XOR 0x85ebca6b)))
 *   shard          = hash mod shards
 */
import type { Int64, Task } from './task.ts'

/**
 * A routing key as a Map key: the uid itself for an int uid up to 2^53 (no string is built on the
 * hot path), `i<uid>` for a larger one, `s<uid>` for a str uid, `c<node_id>:<conn_id>` for a
 * connection, or `''` when the task has none. Numbers and strings never collide as Map keys.
 */
export type RoutingKey = string | number

function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

const TWO32 = 0x1_0000_0000

function split64(v: Int64): [lo: number, hi: number] {
  if (typeof v === 'bigint') {
    const u = BigInt.asUintN(64, v)
    return [Number(u & 0xffffffffn), Number(u >> 32n)]
  }
  if (v >= 0 && v < TWO32) return [v, 0]
  const u = BigInt.asUintN(64, BigInt(v))
  return [Number(u & 0xffffffffn), Number(u >> 32n)]
}

/** True when the task carries a uid that logs a player in (absent, 0 and "" do not). */
export function hasUid(task: Task): boolean {
  const u = task.uid
  return u !== undefined && u !== 0 && u !== '' && u !== 0n
}

/** The task's routing key (see the module comment). */
export function routingKey(task: Task): RoutingKey {
  const u = task.uid
  if (u !== undefined && u !== 0 && u !== '' && u !== 0n) {
    if (typeof u === 'number') return u
    return typeof u === 'string' ? 's' + u : 'i' + u.toString()
  }
  if (task.nodeId !== undefined && task.connId !== undefined) return 'c' + task.nodeId + ':' + task.connId.toString()
  return ''
}

/** A 32-bit hash of the task's routing key; 0 for a task without a key. */
export function routingHash(task: Task): number {
  const u = task.uid
  if (u !== undefined && u !== 0 && u !== '' && u !== 0n) {
    if (typeof u === 'string') {
      let h = 0x811c9dc5
      for (let i = 0; i < u.length; i++) {
        h ^= u.charCodeAt(i)
        h = Math.imul(h, 0x01000193)
      }
      return fmix32(h >>> 0)
    }
    const [lo, hi] = split64(u)
    return fmix32((lo ^ fmix32((hi ^ 0x9e3779b9) >>> 0)) >>> 0)
  }
  if (task.nodeId !== undefined && task.connId !== undefined) {
    const [lo, hi] = split64(task.connId)
    return fmix32((task.nodeId ^ fmix32((lo ^ fmix32((hi ^ 0x85ebca6b) >>> 0)) >>> 0)) >>> 0)
  }
  return 0
}

/** The shard (0 … shards−1) of a task; a task without a routing key is in shard 0. */
export function shardOf(task: Task, shards: number): number {
  return routingHash(task) % shards
}
