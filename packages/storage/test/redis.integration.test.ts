import { Redis } from 'ioredis'
import type { AbstractStorage } from '@peony/storage'
import { RedisStorage } from '@peony/storage/redis'
import { storageSuite } from '@peony/storage/testing'
import { redisForTests, startRedisServer, waitFor, type RedisServer } from '@peony/test-utils'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'

const redis = await redisForTests()
const admin = redis === undefined ? undefined : new Redis(redis.url)
afterAll(async () => {
  await admin?.quit()
  await redis?.stop()
})

let n = 0
/** Each instance's own base prefix (the suite's prefix goes after it). */
const bases = new WeakMap<AbstractStorage, string>()
const unique = () => `peony-test:${process.pid}:${++n}:`
const make = (base: string, prefix = '') => {
  const s = new RedisStorage({ url: redis!.url, prefix: base + prefix })
  bases.set(s, base)
  return s
}
async function deleteKeys(pattern: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await admin!.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) await admin!.del(...keys)
  } while (cursor !== '0')
}

describe.skipIf(redis === undefined)('RedisStorage', () => {
  storageSuite({
    name: 'RedisStorage',
    factory: ({ prefix }) => make(unique(), prefix),
    reopen: (previous, { prefix }) => make(bases.get(previous)!, prefix),
    cleanup: (s) => deleteKeys(`${bases.get(s)}*`),
  })

  describe('driver specifics', () => {
    const made: RedisStorage[] = []
    afterEach(async () => {
      for (const s of made.splice(0)) {
        await s.close()
        await deleteKeys(`${s.prefix}*`)
      }
    })
    const open = async (options: ConstructorParameters<typeof RedisStorage>[0] = {}) => {
      const s = new RedisStorage({ url: redis!.url, prefix: unique(), ...options })
      made.push(s)
      await s.open()
      return s
    }

    it('key layout: the first segment is the hash tag; fences live under fence:', async () => {
      const s = await open()
      const p = s.prefix
      await s.put('a/b/c', Buffer.from('x'))
      await s.put('solo', Buffer.from('y'))
      await s.acquire('a')
      await s.acquire('a/b')
      await s.acquire('a/b')
      expect(await admin!.get(`${p}{a}/b/c`)).toBe('x')
      expect(await admin!.get(`${p}{solo}`)).toBe('y')
      expect(await admin!.get(`${p}fence:{a}`)).toBe('1')
      expect(await admin!.get(`${p}fence:{a}/b`)).toBe('2')
      expect((await admin!.keys(`${p}*`)).sort()).toEqual([`${p}fence:{a}`, `${p}fence:{a}/b`, `${p}{a}/b/c`, `${p}{solo}`].sort())
    })

    it('supports: persistent, shared, atomic batches (MULTI) when not in cluster mode', async () => {
      const s = await open()
      expect(s.supports).toEqual({ persistent: true, shared: true, atomicBatch: true, fencing: true })
      expect(new RedisStorage({ cluster: true }).supports.atomicBatch).toBe(false)
    })

    for (const writesPerScript of [1, 3, 256]) {
      it(`writesPerScript ${writesPerScript}: refused indexes are right across script calls`, async () => {
        const s = await open({ writesPerScript })
        const writes = []
        const expected: number[] = []
        for (let i = 0; i < 20; i++) {
          const g = await s.acquire(`u${i}`)
          const stale = i % 3 === 1
          if (stale) {
            await s.acquire(`u${i}`)
            expected.push(i)
          }
          writes.push({ fence: `u${i}`, generation: g, ops: [{ type: 'put' as const, key: `u${i}/s`, value: Buffer.from(String(i)) }] })
        }
        expect(await s.writeFenced(writes)).toEqual({ refused: expected })
        const got = await s.getMany(writes.map((w) => `${w.fence}/s`))
        got.forEach((v, i) => (expected.includes(i) ? expect(v).toBeUndefined() : expect(Buffer.from(v!).toString()).toBe(String(i))))
      })
    }

    it('one write with 60,000 ops (more arguments than a JS call may spread)', async () => {
      const s = await open()
      const g = await s.acquire('big')
      const ops = Array.from({ length: 60_000 }, (_, i) => ({ type: 'put' as const, key: `big/${i}`, value: Buffer.from(String(i)) }))
      expect(await s.writeFenced([{ fence: 'big', generation: g, ops }])).toEqual({ refused: [] })
      const got = await s.getMany(['big/0', 'big/59999'])
      expect(got.map((v) => Buffer.from(v!).toString())).toEqual(['0', '59999'])
    })

    it('a client given in options is used and not closed', async () => {
      const client = new Redis(redis!.url, { lazyConnect: true })
      try {
        const s = new RedisStorage({ client, prefix: unique() })
        made.push(s)
        await s.open()
        expect(s.client).toBe(client)
        await s.put('k', Buffer.from('v'))
        await s.close()
        expect(await client.get(`${s.prefix}{k}`)).toBe('v')
      } finally {
        client.disconnect()
      }
    })

    it('options are checked', () => {
      expect(() => new RedisStorage({ opTimeoutMs: 0 })).toThrow(RangeError)
      expect(() => new RedisStorage({ writesPerScript: 0 })).toThrow(RangeError)
      expect(new RedisStorage({ url: 'redis://x:1' }).url).toBe('redis://x:1')
    })
  })

  describe('outages (a redis-server of its own)', () => {
    let server: RedisServer
    const made: RedisStorage[] = []
    beforeAll(async () => {
      server = await startRedisServer()
    })
    afterEach(async () => {
      server.resume()
      for (const s of made.splice(0)) await s.close()
      await server.start()
    })
    afterAll(async () => {
      await server?.stop()
    })
    const storage = (opTimeoutMs = 500) => {
      const s = new RedisStorage({ url: server.url, prefix: unique(), opTimeoutMs })
      made.push(s)
      return s
    }

    it('Redis down: calls fail fast with PEONY_STORAGE_UNAVAILABLE (retryable); the storage recovers when Redis is back', async () => {
      const s = storage()
      await s.open()
      await s.put('k', Buffer.from('v'))
      await server.stop()
      for (const call of [() => s.get('k'), () => s.put('k', Buffer.from('w')), () => s.acquire('f'), () => s.claim('f', ['f']), () => s.writeFenced([{ fence: 'f', generation: 1, ops: [] }]), () => s.batch([{ type: 'del', key: 'k' }]), () => s.getMany(['k'])]) {
        const t = Date.now()
        const err = (await call().catch((e: unknown) => e)) as Error
        expect(err).toMatchObject({ code: 'PEONY_STORAGE_UNAVAILABLE', retryable: true })
        expect(Date.now() - t).toBeLessThan(1500)
        // Peony's words in the message; the driver's own text only as the cause.
        expect(err.message).toMatch(new RegExp(`^the Redis storage at ${server.url} is not reachable \\(\\w+ failed\\); the driver keeps reconnecting$`))
        expect(err.cause).toBeInstanceOf(Error)
        expect((err.cause as Error).message).toMatch(/Stream isn't writeable|Connection is closed|ECONNREFUSED/)
      }
      await server.start()
      await waitFor(async () => (await s.put('k', Buffer.from('back')).then(() => true, () => false)), { timeoutMs: 5000, message: 'the storage did not recover' })
      expect(Buffer.from((await s.get('k'))!).toString()).toBe('back')
      expect(s.status).toBe('open')
    })

    it('notApplied is claimed only when proven: one refused script call yes, a write over several calls no, a timeout no', async () => {
      const s = new RedisStorage({ url: server.url, prefix: unique(), opTimeoutMs: 300, writesPerScript: 1 })
      made.push(s)
      const one = storage(300)
      await Promise.all([s.open(), one.open()])
      const [g1, g2] = [await s.acquire('f1'), await s.acquire('f2')]
      const g = await one.acquire('f1')
      const admin = new Redis(server.url)
      try {
        // A replica of nobody: Redis refuses every write with READONLY before it runs it.
        await admin.call('REPLICAOF', '127.0.0.1', '1')
        const put = (fence: string, generation: number) => ({ fence, generation, ops: [{ type: 'put' as const, key: fence, value: Buffer.from('x') }] })
        const single = await one.writeFenced([put('f1', g)]).catch((e: unknown) => e)
        expect(single).toMatchObject({ code: 'PEONY_STORAGE_UNAVAILABLE', notApplied: true })
        // Two script calls (writesPerScript 1): the first may have run before the second failed.
        const multi = await s.writeFenced([put('f1', g1), put('f2', g2)]).catch((e: unknown) => e)
        expect(multi).toMatchObject({ code: 'PEONY_STORAGE_UNAVAILABLE', notApplied: false })
      } finally {
        await admin.call('REPLICAOF', 'NO', 'ONE')
        admin.disconnect()
      }
      server.pause()
      const late = await one.put('k', Buffer.from('v')).catch((e: unknown) => e)
      expect(late).toMatchObject({ code: 'PEONY_STORAGE_UNAVAILABLE', notApplied: false })
    })

    it('Redis hung (SIGSTOP): a call fails with PEONY_STORAGE_UNAVAILABLE after opTimeoutMs, not never', async () => {
      const s = storage(300)
      await s.open()
      server.pause()
      const t = Date.now()
      const err = (await s.get('k').catch((e: unknown) => e)) as Error
      expect(err).toMatchObject({ code: 'PEONY_STORAGE_UNAVAILABLE', retryable: true, message: `the Redis storage at ${server.url} did not answer GET in time; the call may be tried again` })
      expect((err.cause as Error).message).toMatch(/timed out/i)
      const took = Date.now() - t
      expect(took).toBeGreaterThanOrEqual(250)
      expect(took).toBeLessThan(2000)
      server.resume()
      await waitFor(async () => (await s.get('k').then(() => true, () => false)), { timeoutMs: 5000 })
    })

    it('reloads the script after SCRIPT FLUSH (NOSCRIPT → SCRIPT LOAD → EVALSHA again), and after a restart', async () => {
      const s = storage()
      await s.open()
      const g = await s.acquire('u')
      await s.writeFenced([{ fence: 'u', generation: g, ops: [{ type: 'put', key: 'u', value: Buffer.from('1') }] }])
      const direct = new Redis(server.url)
      await direct.script('FLUSH')
      direct.disconnect()
      expect(await s.writeFenced([{ fence: 'u', generation: g, ops: [{ type: 'put', key: 'u', value: Buffer.from('2') }] }])).toEqual({ refused: [] })
      expect(Buffer.from((await s.get('u'))!).toString()).toBe('2')
      await server.stop()
      await server.start()
      // The restarted server is empty (no persistence): its generations start again at 1.
      await waitFor(async () => (await s.acquire('u').then(() => true, () => false)), { timeoutMs: 5000 })
      expect(await s.writeFenced([{ fence: 'u', generation: 1, ops: [{ type: 'put', key: 'u', value: Buffer.from('3') }] }])).toEqual({ refused: [] })
    })

    it('open() while Redis is down: PEONY_STORAGE_UNAVAILABLE, status closed; open() later works', async () => {
      await server.stop()
      const s = storage()
      const t = Date.now()
      await expect(s.open()).rejects.toMatchObject({ code: 'PEONY_STORAGE_UNAVAILABLE', retryable: true, message: `could not connect to the Redis storage at ${server.url}`, cause: { message: expect.stringMatching(/ECONNREFUSED/) } })
      expect(Date.now() - t).toBeLessThan(1500)
      expect(s.status).toBe('closed')
      await server.start()
      await s.open()
      await s.put('k', Buffer.from('v'))
    })
  })
})
