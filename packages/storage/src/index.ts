/**
 * @peony/storage: where Peony keeps each player's state. The contract (AbstractStorage, with
 * fencing for write-behind), MemoryStorage, the LevelDB and Redis drivers, and the remote host
 * that serves one storage to many worker threads. The compliance suite is `@peony/storage/testing`.
 *
 * Importing this entry loads neither classic-level nor ioredis: each driver imports its library
 * when it opens. The drivers are also under their own subpaths (`/leveldb`, `/redis`, `/remote`).
 */

// Contract
export { AbstractStorage } from './storage.ts'
export type { AbstractStorageOptions, BatchOp, ClaimResult, FencedResult, FencedWrite, StorageStatus, StorageSupports } from './storage.ts'

// Drivers
export { MemoryStorage, MemoryStore } from './memory-storage.ts'
export type { MemoryStorageOptions } from './memory-storage.ts'
export { LevelStorage } from './leveldb/level-storage.ts'
export type { LevelStorageOptions } from './leveldb/level-storage.ts'
export { RedisStorage } from './redis/redis-storage.ts'
export type { RedisStorageOptions } from './redis/redis-storage.ts'

// Remote host
export { serveStorage } from './remote/serve-storage.ts'
export type { StorageServer } from './remote/serve-storage.ts'
export { RemoteStorage } from './remote/remote-storage.ts'
export type { RemoteStorageOptions } from './remote/remote-storage.ts'

// Errors
export { StorageError, StorageErrorCode, isNotApplied, isStorageError } from './errors.ts'
export type { StorageErrorOptions } from './errors.ts'
