/**
 * @peony/storage/testing: the compliance suite. Call `storageSuite({ name, factory })` in a
 * vitest test file to check a driver against the contract (vitest is a peer dependency of this
 * subpath only).
 */
export { storageSuite, SUITE_PREFIX } from './suite.ts'
export type { StorageFactoryOptions, StorageSuiteOptions, SuiteContext } from './context.ts'
export { createContext, expectBytes, expectCode } from './context.ts'
