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
  // The data-loss case of the suite is expected to find a loss: no process warning for it here.
  const s = new RedisStorage({ url: redis!.url, prefix: base + prefix, onDataLoss: () => false })
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
    // What a Redis restarted without persistence does to this storage's keys (the shared server is
    // never flushed: only this instance's keys go).
    loseData: (s) => deleteKeys(`${bases.get(s)}*`),
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
      const before = Date.now() * 1000
      const a = await s.acquire('a')
      await s.acquire('a/b')
      const ab = await s.acquire('a/b')
      expect(await admin!.get(`${p}{a}/b/c`)).toBe('x')
      expect(await admin!.get(`${p}{solo}`)).toBe('y')
      // A fence starts at Redis' clock in µs (printed as an integer), then counts up.
      expect(a).toBeGreaterThan(before - 60e6)
      expect(await admin!.get(`${p}fence:{a}`)).toBe(String(a))
      expect(await admin!.get(`${p}fence:{a}/b`)).toBe(String(ab))
      const marker = await admin!.get(`${p}peony:gens`)
      expect(marker).toMatch(/^\d{16}$/)
      expect(Number(marker)).toBeLessThanOrEqual(a)
      expect((await admin!.keys(`${p}*`)).sort()).toEqual([`${p}fence:{a}`, `${p}fence:{a}/b`, `${p}peony:gens`, `${p}{a}/b/c`, `${p}{solo}`].sort())
    })

    it('a fence from before the µs start (a small generation) keeps counting up (upgrade)', async () => {
      const s = await open()
      await admin!.set(`${s.prefix}fence:{old}`, '7')
      expect(await s.acquire('old')).toBe(8)
      const c = await s.claim('old', ['old'])
      expect(c.generation).toBe(9)
      expect((await s.writeFenced([{ fence: 'old', generation: 9, ops: [{ type: 'put', key: 'old', value: Buffer.from('v') }] }])).refused).toEqual([])
      expect((await s.writeFenced([{ fence: 'old', generation: 8, ops: [{ type: 'put', key: 'old', value: Buffer.from('w') }] }])).refused).toEqual([0])
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
      for (const call of [
        () => s.get('k'),
        () => s.put('k', Buffer.from('w')),
        () => s.acquire('f'),
        () => s.claim('f', ['f']),
        () => s.writeFenced([{ fence: 'f', generation: 1, ops: [] }]),
        () => s.batch([{ type: 'del', key: 'k' }]),
        () => s.getMany(['k']),
      ]) {
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
      await waitFor(
        async () =>
          await s.put('k', Buffer.from('back')).then(
            () => true,
            () => false,
          ),
        { timeoutMs: 5000, message: 'the storage did not recover' },
      )
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
      expect(err).toMatchObject({
        code: 'PEONY_STORAGE_UNAVAILABLE',
        retryable: true,
        message: `the Redis storage at ${server.url} did not answer GET in time; the call may be tried again`,
      })
      expect((err.cause as Error).message).toMatch(/timed out/i)
      const took = Date.now() - t
      expect(took).toBeGreaterThanOrEqual(250)
      expect(took).toBeLessThan(2000)
      server.resume()
      await waitFor(
        async () =>
          await s.get('k').then(
            () => true,
            () => false,
          ),
        { timeoutMs: 5000 },
      )
    })

    it('a flushed script cache between two writes of one fence: they still land in call order (EVAL, no NOSCRIPT retry)', async () => {
      const s = storage()
      await s.open()
      const g = await s.acquire('u')
      const put = (v: string) => s.writeFenced([{ fence: 'u', generation: g, ops: [{ type: 'put', key: 'u', value: Buffer.from(v) }] }])
      await put('0')
      const direct = new Redis(server.url)
      try {
        await direct.script('FLUSH')
        // Force the interleaving a NOSCRIPT retry allows: if the driver reloads the script, the
        // second write is issued (and lands) while the first waits for its re-send; another
        // client may have loaded the script meanwhile.
        const client = s.client as Redis
        const original = client.script.bind(client) as (...args: unknown[]) => Promise<unknown>
        let reloads = 0
        let second: Promise<unknown> | undefined
        ;(client as unknown as { script: unknown }).script = async (...args: unknown[]) => {
          reloads++
          const r = await original(...args)
          second ??= put('2')
          await second
          return r
        }
        const first = put('1')
        await first
        second ??= put('2')
        await second
        expect(Buffer.from((await s.get('u'))!).toString(), 'the later write wins').toBe('2')
        expect(reloads, 'no script reload path').toBe(0)
      } finally {
        direct.disconnect()
      }
    })

    it('a Redis restarted empty under two owners: the old owner is refused and its write kept under lost:, the sole owner adopted, the operator told once', async () => {
      const losses: unknown[] = []
      const mk = () => {
        const st = new RedisStorage({ url: server.url, prefix: 'app:', opTimeoutMs: 500, onDataLoss: (info) => void losses.push(info) })
        made.push(st)
        return st
      }
      const old = mk()
      const other = mk()
      await Promise.all([old.open(), other.open()])
      const warnings: Error[] = []
      const onWarning = (w: Error) => {
        if ((w as { code?: string }).code === 'PEONY_STORAGE_DATA_LOST') warnings.push(w)
      }
      process.on('warning', onWarning)
      try {
        const a = await old.claim('a', ['a'])
        const solo = await old.claim('solo', ['solo'])
        await old.writeFenced([
          { fence: 'a', generation: a.generation, ops: [{ type: 'put', key: 'a', value: Buffer.from('a1') }] },
          { fence: 'solo', generation: solo.generation, ops: [{ type: 'put', key: 'solo', value: Buffer.from('s1') }] },
        ])
        await server.stop()
        await server.start() // no persistence: empty
        await waitFor(
          async () =>
            (await other.get('x').then(
              () => true,
              () => false,
            )) &&
            (await old.get('x').then(
              () => true,
              () => false,
            )),
          { timeoutMs: 5000 },
        )
        // Another server process loads 'a' after the restart.
        const a2 = await other.claim('a', ['a'])
        expect(a2.generation).toBeGreaterThan(a.generation)
        const put = (fence: string, generation: number, v: string) => ({
          fence,
          generation,
          ops: [
            { type: 'put' as const, key: fence, value: Buffer.from(v) },
            { type: 'put' as const, key: `${fence}/bag`, value: Buffer.from(`${v}-bag`) },
          ],
        })
        const res = await old.writeFenced([put('a', a.generation, 'stale'), put('solo', solo.generation, 's2')])
        expect(res.refused, 'the old owner of a is refused; the sole owner of solo is not').toEqual([0])
        const direct = new Redis(server.url)
        try {
          expect(await direct.get('app:{a}')).toBeNull()
          expect(await direct.hgetall(`app:lost:{a}:${a.generation}`), 'the refused write is kept').toEqual({ '{a}': 'stale', '{a}/bag': 'stale-bag' })
          expect(await direct.get('app:{solo}')).toBe('s2')
          expect(await direct.get('app:fence:{solo}')).toBe(String(solo.generation))
        } finally {
          direct.disconnect()
        }
        expect((await other.writeFenced([put('a', a2.generation, 'new')])).refused).toEqual([])
        expect((await old.writeFenced([put('solo', solo.generation, 's3')])).refused).toEqual([])
        await new Promise((r) => setImmediate(r))
        expect(losses, 'told once').toHaveLength(1)
        expect(losses[0]).toMatchObject({ code: 'PEONY_STORAGE_DATA_LOST', message: expect.stringContaining('lost its data') })
        expect(old.dataLossSeen).toBe(true)
        expect(warnings).toHaveLength(1)
      } finally {
        process.off('warning', onWarning)
      }
    })

    it('open() while Redis is down: PEONY_STORAGE_UNAVAILABLE, status closed; open() later works', async () => {
      await server.stop()
      const s = storage()
      const t = Date.now()
      await expect(s.open()).rejects.toMatchObject({
        code: 'PEONY_STORAGE_UNAVAILABLE',
        retryable: true,
        message: `could not connect to the Redis storage at ${server.url}`,
        cause: { message: expect.stringMatching(/ECONNREFUSED/) },
      })
      expect(Date.now() - t).toBeLessThan(1500)
      expect(s.status).toBe('closed')
      await server.start()
      await s.open()
      await s.put('k', Buffer.from('v'))
    })
  })
})
