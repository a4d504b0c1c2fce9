/**
 * Redis key layout. The hash tag of a key is its first '/'-separated segment, so a session's fence
 * and every key in its scope (`fence` or `fence/…`) map to one Redis Cluster slot:
 *
 *   key   `a/b/c`  → `${prefix}{a}/b/c`
 *   key   `a`      → `${prefix}{a}`
 *   fence `a`      → `${prefix}fence:{a}`
 *   fence `a/b`    → `${prefix}fence:{a}/b`
 *
 * A data key always has '{' right after the prefix and a fence key 'f', so they never collide.
 */

/** `name` with its first '/'-separated segment wrapped in a hash tag. */
export function hashTagged(name: string): string {
  const i = name.indexOf('/')
  return i < 0 ? `{${name}}` : `{${name.slice(0, i)}}${name.slice(i)}`
}

/** The Redis key of a storage key (`key` without the prefix). */
export function dataKey(prefix: string, key: string): string {
  return prefix + hashTagged(key)
}

/** The Redis key of a fence's generation (`fence` without the prefix). */
export function fenceKey(prefix: string, fence: string): string {
  return `${prefix}fence:${hashTagged(fence)}`
}

/** The marker key of a prefix: the time (µs) its first generation was handed out. See scripts.ts. */
export function markerKey(prefix: string): string {
  return `${prefix}peony:gens`
}

/** The start of the keys that keep refused writes of owners from before a data loss: `${prefix}lost:{a}/b:<generation>`. */
export function lostPrefix(prefix: string): string {
  return `${prefix}lost:`
}
