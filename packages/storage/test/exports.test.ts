import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as root from '@peony/storage'
import * as leveldb from '@peony/storage/leveldb'
import * as redis from '@peony/storage/redis'
import * as remote from '@peony/storage/remote'
import * as testing from '@peony/storage/testing'
import { describe, expect, it } from 'vitest'

const FIXTURE = fileURLToPath(new URL('./fixtures/import-root.ts', import.meta.url))
const load = (spec: string) =>
  JSON.parse(
    execFileSync(process.execPath, ['--conditions=@peony/source', '--import', 'tsx', FIXTURE, spec], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    }),
  ) as { exports: string[]; loaded: string[] }

describe('package entry points', () => {
  it('the root entry exports the contract, every driver, the remote host and the errors', () => {
    for (const name of [
      'AbstractStorage',
      'MemoryStorage',
      'MemoryStore',
      'LevelStorage',
      'RedisStorage',
      'RemoteStorage',
      'serveStorage',
      'StorageError',
      'StorageErrorCode',
      'isStorageError',
    ]) {
      expect(root, name).toHaveProperty(name)
    }
    expect(leveldb.LevelStorage).toBe(root.LevelStorage)
    expect(redis.RedisStorage).toBe(root.RedisStorage)
    expect(remote.RemoteStorage).toBe(root.RemoteStorage)
    expect(remote.serveStorage).toBe(root.serveStorage)
    expect(typeof testing.storageSuite).toBe('function')
  })

  it("the codes are the contract's", () => {
    expect(root.StorageErrorCode).toEqual({
      NOT_OPEN: 'PEONY_STORAGE_NOT_OPEN',
      INVALID_KEY: 'PEONY_STORAGE_INVALID_KEY',
      INVALID_VALUE: 'PEONY_STORAGE_INVALID_VALUE',
      UNAVAILABLE: 'PEONY_STORAGE_UNAVAILABLE',
      LOCKED: 'PEONY_STORAGE_LOCKED',
      FAILED: 'PEONY_STORAGE_FAILED',
      CLOSED: 'PEONY_STORAGE_CLOSED',
    })
    const err = new root.StorageError('PEONY_STORAGE_UNAVAILABLE', 'x')
    expect(err).toMatchObject({ name: 'StorageError', retryable: true })
    expect(new root.StorageError('PEONY_STORAGE_FAILED', 'x').retryable).toBe(false)
    expect(root.isStorageError(err, 'PEONY_STORAGE_UNAVAILABLE')).toBe(true)
    expect(root.isStorageError(new Error('x'))).toBe(false)
  })

  it('importing the root entry (or the driver subpaths) loads neither classic-level nor ioredis', () => {
    for (const spec of ['@peony/storage', '@peony/storage/leveldb', '@peony/storage/redis', '@peony/storage/remote']) {
      expect(load(spec).loaded, spec).toEqual([])
    }
  })
})
