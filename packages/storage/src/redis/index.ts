/**
 * @peony/storage/redis: RedisStorage, the Redis and Redis Cluster driver (ioredis 5, an optional
 * peer dependency loaded when a RedisStorage opens), and its key layout.
 */
export { RedisStorage } from './redis-storage.ts'
export type { RedisStorageOptions } from './redis-storage.ts'
export { dataKey, fenceKey, hashTagged } from './keys.ts'
