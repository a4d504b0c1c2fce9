/**
 * What every module of the compliance suite gets: the suite's options, the prefix of the current
 * run, and helpers that create storages which are closed and cleaned up after each test.
 */
import { afterEach, expect } from 'vitest'
import type { AbstractStorage } from '../storage.ts'

/** What the suite asks a factory for. */
export interface StorageFactoryOptions {
  /**
   * The prefix to give the driver (undefined in the first run). A factory may prepend its own
   * (a unique prefix per instance, say): the suite checks that `storage.prefix` ends with it.
   */
  prefix?: string | undefined
}

/** Options of {@link storageSuite}. */
export interface StorageSuiteOptions {
  /** The describe() title. */
  name: string
  /** A fresh, isolated, not yet opened storage for each call (a new temp dir, a unique key prefix). */
  factory: (options: StorageFactoryOptions) => AbstractStorage | Promise<AbstractStorage>
  /**
   * A new, not yet opened storage over the same data as `previous` (already closed), with the
   * given prefix: the same LevelDB directory, the same Redis server and base prefix, the same
   * MemoryStore. Enables the persistence and prefix-isolation tests.
   */
  reopen?: ((previous: AbstractStorage, options: StorageFactoryOptions) => AbstractStorage | Promise<AbstractStorage>) | undefined
  /** Called after each storage the suite made was closed (remove its temp dir, delete its keys). */
  cleanup?: ((storage: AbstractStorage) => unknown) | undefined
  /**
   * A fault hook: hold the next backend read of `storage` (the first one it starts after this
   * call) until `release()`; later reads go through. Enables the tests of call order under a slow
   * cold read (an abandoned claim must never fence the claim that retried it). Tests that need it
   * are skipped, visibly, when it is missing.
   */
  holdNextRead?: ((storage: AbstractStorage) => { release(): void }) | undefined
  /**
   * Makes the backend lose every key and generation of `storage` (an open storage), as a Redis
   * restarted without persistence would. Enables the data-loss tests; skipped when missing.
   */
  loseData?: ((storage: AbstractStorage) => Promise<void>) | undefined
}

/** The context of one run of the suite (one prefix configuration). */
export interface SuiteContext {
  readonly options: StorageSuiteOptions
  /** The prefix requested from the factory in this run. */
  readonly prefix: string | undefined
  /** A fresh storage, not opened. Closed and cleaned up after the test. */
  create(): Promise<AbstractStorage>
  /** A fresh storage, opened. */
  open(): Promise<AbstractStorage>
  /** Closes `previous` and returns a new opened storage over the same data (needs options.reopen). */
  reopen(previous: AbstractStorage, prefix?: string): Promise<AbstractStorage>
}

/** Builds the context of one run and registers its afterEach. */
export function createContext(options: StorageSuiteOptions, prefix: string | undefined): SuiteContext {
  let made: AbstractStorage[] = []
  afterEach(async () => {
    const list = made
    made = []
    for (const s of list) await s.close().catch(() => undefined)
    if (options.cleanup !== undefined) for (const s of list) await options.cleanup(s)
  })
  const track = (s: AbstractStorage): AbstractStorage => {
    made.push(s)
    return s
  }
  const ctx: SuiteContext = {
    options,
    prefix,
    async create() {
      return track(await options.factory(prefix === undefined ? {} : { prefix }))
    },
    async open() {
      const s = await ctx.create()
      await s.open()
      return s
    },
    async reopen(previous, p = prefix) {
      const reopen = options.reopen
      if (reopen === undefined) throw new Error('this suite has no reopen option')
      await previous.close()
      const s = track(await reopen(previous, p === undefined ? {} : { prefix: p }))
      await s.open()
      return s
    },
  }
  return ctx
}

/** Bytes of a string (UTF-8). */
export function b(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'utf8'))
}

/** Asserts that `actual` is a Uint8Array holding exactly the bytes of `expected`. */
export function expectBytes(actual: Uint8Array | undefined, expected: Uint8Array | string): void {
  const want = typeof expected === 'string' ? b(expected) : expected
  expect(actual, 'a value').toBeDefined()
  expect(actual).toBeInstanceOf(Uint8Array)
  const got = actual as Uint8Array
  expect(got.byteLength, 'value length').toBe(want.byteLength)
  const same = Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))
  expect(same, `value bytes differ (got ${hex(got)}…, want ${hex(want)}…)`).toBe(true)
}

/** Asserts that `p` rejects with a coded error. */
export async function expectCode(p: Promise<unknown>, code: string, retryable?: boolean): Promise<void> {
  await expect(p).rejects.toMatchObject(retryable === undefined ? { code } : { code, retryable })
}

function hex(u: Uint8Array): string {
  return Buffer.from(u.buffer, u.byteOffset, Math.min(u.byteLength, 16)).toString('hex')
}
