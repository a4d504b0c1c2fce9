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
 */
import { createHash } from 'node:crypto'
import { hasUid } from './routing.ts'
import type { Task } from './task.ts'

/** The key bytes of a task's routing key (protocol §1.3): `'i'|'s'|'c'` followed by the encoded key. */
export type RoutingKeyBytes = Uint8Array

const TAG_INT = 0x69 // 'i'
const TAG_STR = 0x73 // 's'
const TAG_CONN = 0x63 // 'c'
const SEPARATOR = Buffer.from([0])

/**
 * The routing key bytes of a task, or `undefined` when the task has no routing key.
 * Throws a RangeError when an int uid or `conn_id` does not fit int64, or `node_id` does not fit int32
 * (the codec rejects such tasks anyway).
 */
export function routingKeyBytes(task: Task): RoutingKeyBytes | undefined {
  if (hasUid(task)) {
    const uid = task.uid as NonNullable<Task['uid']>
    if (typeof uid === 'string') {
      const utf8 = Buffer.from(uid, 'utf8')
      const out = Buffer.allocUnsafe(1 + utf8.length)
      out[0] = TAG_STR
      utf8.copy(out, 1)
      return out
    }
    const out = Buffer.allocUnsafe(9)
    out[0] = TAG_INT
    out.writeBigInt64BE(toInt64(uid, 'uid'), 1)
    return out
  }
  if (task.nodeId !== undefined && task.connId !== undefined) {
    const out = Buffer.allocUnsafe(13)
    out[0] = TAG_CONN
    out.writeInt32BE(task.nodeId, 1)
    out.writeBigInt64BE(toInt64(task.connId, 'conn_id'), 5)
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

/** The score of one server for one routing key: the first 8 bytes of the SHA-1 digest, big-endian unsigned. */
export function serverScore(serverId: string, key: RoutingKeyBytes): bigint {
  const digest = createHash('sha1').update(serverId, 'utf8').update(SEPARATOR).update(key).digest()
  return digest.readBigUInt64BE(0)
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
