/**
 * @peony/storage/remote: one storage served to many threads. `serveStorage` runs where the
 * storage is open (the storage host thread); each worker thread talks to it through a
 * `RemoteStorage` on its own MessagePort.
 */
export { serveStorage } from './serve-storage.ts'
export type { StorageServer } from './serve-storage.ts'
export { RemoteStorage } from './remote-storage.ts'
export type { RemoteStorageOptions } from './remote-storage.ts'
