/**
 * @peony/storage/leveldb: LevelStorage, the LevelDB driver (classic-level 3, an optional peer
 * dependency loaded when a LevelStorage opens).
 */
export { LevelStorage } from './level-storage.ts'
export type { LevelStorageOptions } from './level-storage.ts'
