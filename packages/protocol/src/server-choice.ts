/**
 * Choosing a peony server for a task (protocol §1.3): rendezvous (highest-random-weight)
 * hashing over the configured server ids, so brokers written in any language send one player
 * to the same server.
 *
 * ```
 * score(server, key) = first 8 bytes, big-endian unsigned, of SHA-1( utf8(server id) ‖ 0x00 ‖ key bytes )
 * key bytes = 'i' ‖ uid as int64 BE                     (int uid)
 *           | 's' ‖ uid as UTF-8                         (str uid)
 *           | 'c' ‖ node_id int32 BE ‖ conn_id int64 BE  (connection-routed task)
 * ```
 *
 * Decisions where the protocol is silent, kept stable because brokers in other languages must
 * make the same ones:
 * - **Ties** (two servers with the same 64-bit score, probability ≈ 2^-64 per pair) go to the
 *   smaller server id by plain string comparison (JavaScript `<`, i.e. UTF-16 code-unit order;
 *   this equals code-point order for every id without characters above U+FFFF).
 * - **A task with no routing key** (no uid, or a uid of `0`/`""`, and not both `node_id` and
 *   `conn_id`) goes to the smallest server id, by the same comparison.
 *
 * Golden vectors computed by an independent Python implementation live in
 * `test/fixtures/server-choice-vectors.json` (regenerate with `test/fixtures/server_choice_vectors.py`).
 * The SHA-1 is `sha1.ts`, plain TypeScript equal byte for byte to `node:crypto`'s (test/sha1.test.ts),
 * so this module loads in a browser too.
 */
import { hasUid } from './routing.ts'
import { sha1Words } from './sha1.ts'
import type { Task } from './task.ts'

/** The key bytes of a task's routing key (protocol §1.3): `'i'|'s'|'c'` followed by the encoded key. */
export type RoutingKeyBytes = Uint8Array

const TAG_INT = 0x69 // 'i'
const TAG_STR = 0x73 // 's'
const TAG_CONN = 0x63 // 'c'
const utf8 = new TextEncoder()

/**
 * The routing key bytes of a task, or `undefined` when the task has no routing key.
 * Throws a RangeError when an int uid or `conn_id` does not fit int64, or `node_id` does not fit int32
 * (the codec rejects such tasks anyway).
 */
export function routingKeyBytes(task: Task): RoutingKeyBytes | undefined {
  if (hasUid(task)) {
    const uid = task.uid as NonNullable<Task['uid']>
    if (typeof uid === 'string') {
      const bytes = utf8.encode(uid)
      const out = new Uint8Array(1 + bytes.length)
      out[0] = TAG_STR
      out.set(bytes, 1)
      return out
    }
    const out = new Uint8Array(9)
    out[0] = TAG_INT
    new DataView(out.buffer).setBigInt64(1, toInt64(uid, 'uid'))
    return out
  }
  if (task.nodeId !== undefined && task.connId !== undefined) {
    const out = new Uint8Array(13)
    const view = new DataView(out.buffer)
    out[0] = TAG_CONN
    view.setInt32(1, int32(task.nodeId))
    view.setBigInt64(5, toInt64(task.connId, 'conn_id'))
    return out
  }
  return undefined
}

function toInt64(v: number | bigint, name: string): bigint {
  if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new RangeError(`${name} is not an integer: ${v}`)
  const b = BigInt(v)
  if (b < -(2n ** 63n) || b > 2n ** 63n - 1n) throw new RangeError(`${name} does not fit int64: ${b}`)
  return b
}

function int32(v: number): number {
  if (!Number.isInteger(v) || v < -0x8000_0000 || v > 0x7fff_ffff) throw new RangeError(`node_id does not fit int32: ${v}`)
  return v
}

/** The UTF-8 bytes of recently scored server ids (a deployment has a handful; bounded anyway). */
const idBytes = new Map<string, Uint8Array>()
const ID_CACHE_MAX = 1024
let input = new Uint8Array(256)

/** The score of one server for one routing key: the first 8 bytes of the SHA-1 digest, big-endian unsigned. */
export function serverScore(serverId: string, key: RoutingKeyBytes): bigint {
  let id = idBytes.get(serverId)
  if (id === undefined) {
    if (idBytes.size >= ID_CACHE_MAX) idBytes.clear()
    id = utf8.encode(serverId)
    idBytes.set(serverId, id)
  }
  const len = id.length + 1 + key.length
  if (input.length < len) input = new Uint8Array(len)
  input.set(id, 0)
  input[id.length] = 0
  input.set(key, id.length + 1)
  const h = sha1Words(input.subarray(0, len))
  return (BigInt(h[0]! >>> 0) << 32n) | BigInt(h[1]! >>> 0)
}

/**
 * The server id a task goes to: the highest score; ties to the smaller id; a task without a
 * routing key to the smallest id (see the module comment). Throws a RangeError for an empty list,
 * and (with more than one server, when the key is hashed) for a key out of range.
 */
export function chooseServer(serverIds: readonly string[], task: Task): string {
  if (serverIds.length === 0) throw new RangeError('chooseServer needs at least one server id')
  if (serverIds.length === 1) return serverIds[0] as string
  const key = routingKeyBytes(task)
  if (key === undefined) return smallest(serverIds)
  let best = serverIds[0] as string
  let bestScore = serverScore(best, key)
  for (let i = 1; i < serverIds.length; i++) {
    const id = serverIds[i] as string
    const s = serverScore(id, key)
    if (s > bestScore || (s === bestScore && id < best)) {
      best = id
      bestScore = s
    }
  }
  return best
}

function smallest(ids: readonly string[]): string {
  let min = ids[0] as string
  for (let i = 1; i < ids.length; i++) {
    const id = ids[i] as string
    if (id < min) min = id
  }
  return min
}
