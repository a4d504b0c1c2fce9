/**
 * storageSuite: the compliance suite every driver must pass, composed from the per-feature modules
 * of this folder. It runs twice: as the factory makes storages, then again asking the factory for
 * a key prefix (the way Level re-runs its suite on a sublevel).
 */
import { describe } from 'vitest'
import { batchTests } from './batch.ts'
import { binaryTests } from './binary.ts'
import { type StorageSuiteOptions, createContext } from './context.ts'
import { errorTests } from './errors.ts'
import { fencingTests } from './fencing.ts'
import { getManyTests } from './get-many.ts'
import { getPutDelTests } from './get-put-del.ts'
import { openTests } from './open.ts'
import { persistenceTests } from './persistence.ts'
import { prefixTests } from './prefix.ts'

/** The prefix of the second run: a separator, a colon and a non-ASCII letter, on purpose. */
export const SUITE_PREFIX = 'pfx:é/'

/** Registers the compliance suite (vitest describe/it) for one driver. */
export function storageSuite(options: StorageSuiteOptions): void {
  describe(options.name, () => {
    runModules(options, undefined)
    describe(`with prefix ${JSON.stringify(SUITE_PREFIX)}`, () => runModules(options, SUITE_PREFIX))
  })
}

function runModules(options: StorageSuiteOptions, prefix: string | undefined): void {
  const ctx = createContext(options, prefix)
  openTests(ctx)
  getPutDelTests(ctx)
  getManyTests(ctx)
  batchTests(ctx)
  fencingTests(ctx)
  errorTests(ctx)
  binaryTests(ctx)
  prefixTests(ctx)
  persistenceTests(ctx)
}
