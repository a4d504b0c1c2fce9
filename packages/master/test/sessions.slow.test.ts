/**
 * Sessions through the whole master: real worker threads, the storage thread on a real LevelDB
 * (and Redis), tasks from a real broker socket. Each player's counter is incremented by every
 * handled task, so after a run storage must hold exactly the handled count of every uid.
 */
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { LevelStorage } from '@peony/storage/leveldb'
import { RedisStorage } from '@peony/storage/redis'
import type { AbstractStorage } from '@peony/storage'
import { unpackValue } from '@peony/protocol'
import { redisForTests, startRedisServer, tempDir, waitFor, type RedisServer, type TestRedis } from '@peony/test-utils'
import pino from 'pino'
import { masterFixture, replies, req } from './helpers.ts'

const SESSION_APP = fileURLToPath(new URL('./fixtures/session-app.ts', import.meta.url))
const boot = masterFixture({ appModule: SESSION_APP })

/** The counter stored for `uid` (record: msgpack [1, state bytes, timers]). */
async function storedCount(storage: AbstractStorage, uid: number): Promise<number | undefined> {
  const bytes = await storage.get(`player:${uid}`)
  if (bytes === undefined) return undefined
  const rec = unpackValue(bytes) as [number, Uint8Array]
  return (unpackValue(rec[1]) as { count: number }).count
}

/** uid → the highest count its replies carried (each reply checked ret 0 when `ok`). */
function highestCounts(rs: ReturnType<typeof replies>, ok = false): Map<number, number> {
  const handled = new Map<number, number>()
  for (const r of rs) {
    if (ok) expect(r.ret).toBe(0)
    const uid = Number(r.msg.cmd === 220 ? r.msg.connId : 0) - 1000
    handled.set(uid, Math.max(handled.get(uid) ?? 0, r.body.data!.count as number))
  }
  return handled
}

function counts(uids: number, perUid: number): ReturnType<typeof req>[] {
  const tasks = []
  for (let i = 0; i < perUid; i++) for (let u = 1; u <= uids; u++) tasks.push(req(u, 'count', null, {}, i + 1))
  return tasks
}

describe('sessions on LevelDB through the master', () => {
  test('storage holds exactly the handled count of every uid (200 uids × 50 tasks, 2 workers)', async () => {
    const dir = await tempDir('peony-sessions-')
    // 10,000 tasks at once with cold loads may wait past the default queue-wait bound: off here (every one must run).
    const { master, fwd, broker } = await boot({ storage: { driver: 'leveldb', location: dir }, sessions: { maxUnflushedAgeMs: 60_000 }, maxQueueWaitMs: 0 })
    await broker.send(counts(200, 50))
    await fwd.until(10_000, 60_000)
    const rs = replies(fwd.messages)
    expect(rs.every((r) => r.ret === 0)).toBe(true)
    const handled = highestCounts(rs)
    await waitFor(() => master.stats().sessions?.loads === 200, { timeoutMs: 5000 })
    expect(master.stats().sessions).toMatchObject({ resident: 200, loadFailures: 0 })
    await master.stop()
    const level = new LevelStorage({ location: dir })
    await level.open()
    try {
      for (let u = 1; u <= 200; u++) {
        expect(handled.get(u)).toBe(50)
        expect(await storedCount(level, u)).toBe(50)
      }
    } finally {
      await level.close()
    }
  })

  test('a worker crash: its players come back from storage on their next task, loss bounded by the flush settings', async () => {
    const dir = await tempDir('peony-sessions-')
    const { master, fwd, broker } = await boot({
      storage: { driver: 'leveldb', location: dir },
      sessions: { flushIntervalMs: 100, maxUnflushedAgeMs: 200 },
      groups: [{ id: 1, count: 2 }],
    })
    await broker.send(counts(20, 5))
    await fwd.until(100)
    await waitFor(() => master.stats().sessions?.dirty === 0 && (master.stats().sessions?.flushedSessions ?? 0) >= 20, { timeoutMs: 5000 })
    const slotOfUid1 = master.slotOf(req(1, 'count', null))!
    // Three more changes, then kill the worker before the next flush can happen.
    await broker.send([req(1, 'count', null, {}, 6), req(1, 'count', null, {}, 7), req(1, 'count', null, {}, 8)])
    await fwd.until(103)
    await master.workerThread(slotOfUid1)!.terminate()
    await waitFor(() => master.stats().workers === 2 && master.stats().respawns.all >= 1, { timeoutMs: 10_000 })
    await broker.send([req(1, 'get', null, {}, 9)])
    await fwd.until(104)
    const last = replies(fwd.messages).at(-1)!
    // Stored: at least the flushed 5; at most everything handled (8).
    expect(last.body.data!.count).toBeGreaterThanOrEqual(5)
    expect(last.body.data!.count).toBeLessThanOrEqual(8)
    expect(master.stats().sessions?.loads).toBeGreaterThanOrEqual(1)
  })

  test('data stays reachable when the worker count changes between runs (2 workers, then 3, then 1)', async () => {
    const dir = await tempDir('peony-sessions-')
    let expected = 0
    for (const count of [2, 3, 1]) {
      const { master, fwd, broker } = await boot({ storage: { driver: 'leveldb', location: dir }, groups: [{ id: 1, count }] })
      await broker.send(counts(50, 2))
      await fwd.until(100, 30_000)
      expected += 2
      const rs = replies(fwd.messages)
      for (const r of rs) expect(r.ret).toBe(0)
      const last = new Map<number, number>()
      for (const r of rs) last.set(Number(r.msg.cmd === 220 ? r.msg.connId : 0) - 1000, r.body.data!.count as number)
      for (let u = 1; u <= 50; u++) expect(last.get(u)).toBe(expected)
      await master.stop()
    }
  })

  test('two masters on one LevelDB directory: the second fails to start with PEONY_STORAGE_OPEN_FAILED (locked)', async () => {
    const dir = await tempDir('peony-sessions-')
    await boot({ storage: { driver: 'leveldb', location: dir } })
    await expect(boot({ storage: { driver: 'leveldb', location: dir } })).rejects.toMatchObject({ code: 'PEONY_STORAGE_OPEN_FAILED' })
  })

  test('a master reopens a LevelDB directory that a destroyed master left open', async () => {
    const dir = await tempDir('peony-sessions-')
    const a = await boot({ storage: { driver: 'leveldb', location: dir } })
    await a.broker.send(counts(3, 2))
    await a.fwd.until(6)
    await a.master.destroy()
    const b = await boot({ storage: { driver: 'leveldb', location: dir } })
    await b.broker.send([req(1, 'get', null)])
    await b.fwd.until(1)
    expect(replies(b.fwd.messages)[0]!.body.data!.count).toBeGreaterThanOrEqual(0)
  })
})

describe('sessions on Redis through the master', () => {
  let shared: TestRedis | undefined
  let own: RedisServer | undefined
  beforeAll(async () => {
    shared = await redisForTests()
  })
  afterAll(async () => {
    await shared?.stop()
    await own?.stop()
  })

  test('Redis stopped for 10 s under load, then started: no write lost; retries visible in stats', async () => {
    const dataDir = await tempDir('peony-redis-aof-')
    own = await startRedisServer({ persistDir: dataDir })
    const prefix = `peony-test:${process.pid}:outage:`
    const { master, fwd, broker } = await boot({
      storage: { driver: 'redis', url: own.url, prefix },
      sessions: { flushIntervalMs: 100, maxUnflushedAgeMs: 200, retryBaseMs: 100, retryMaxMs: 1000 },
    })
    const uids = 100
    let sent = 0
    const send = async (rounds: number): Promise<void> => {
      for (let i = 0; i < rounds; i++) {
        const batch = []
        for (let u = 1; u <= uids; u++) batch.push(req(u, 'count', null, {}, ++sent))
        await broker.send(batch)
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    await send(10) // players loaded while Redis is up
    await fwd.until(10 * uids, 30_000)
    await own.stop()
    const t0 = Date.now()
    while (Date.now() - t0 < 10_000) await send(1)
    const during = master.stats().sessions!
    expect(during.flushErrors).toBeGreaterThan(0)
    expect(during.retrying).toBeGreaterThan(0)
    expect(during.flushLagMs).toBeGreaterThan(5_000)
    await own.start()
    await send(5)
    const total = sent
    await fwd.until(total, 60_000)
    await waitFor(() => master.stats().sessions?.dirty === 0, { timeoutMs: 20_000 })
    await master.stop()
    const handled = highestCounts(replies(fwd.messages), true)
    const redis = new RedisStorage({ url: own.url, prefix })
    await redis.open()
    try {
      for (let u = 1; u <= uids; u++) expect(await storedCount(redis, u)).toBe(handled.get(u))
    } finally {
      await redis.close()
    }
  }, 90_000)

  test('Redis restarted empty under a running server: the players loaded before keep writing (nothing fenced, no count lost) and the master logs PEONY_STORAGE_DATA_LOST once', async () => {
    const server = await startRedisServer() // no persistence: a restart comes back empty
    const prefix = `peony-test:${process.pid}:lost:`
    const lines: string[] = []
    const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) })
    try {
      const { master, fwd, broker } = await boot({
        storage: { driver: 'redis', url: server.url, prefix },
        sessions: { flushIntervalMs: 100, maxUnflushedAgeMs: 200, retryBaseMs: 100, retryMaxMs: 500 },
        logger,
      })
      const uids = 20
      let sent = 0
      const send = async (rounds: number): Promise<void> => {
        for (let i = 0; i < rounds; i++) {
          const batch = []
          for (let u = 1; u <= uids; u++) batch.push(req(u, 'count', null, {}, ++sent))
          await broker.send(batch)
        }
      }
      await send(5)
      await fwd.until(5 * uids, 30_000)
      await waitFor(() => master.stats().sessions?.dirty === 0, { timeoutMs: 10_000 })
      await server.stop()
      await server.start()
      // Let the storage thread's client reconnect (back-off up to 1 s) before the next writes.
      await new Promise((r) => setTimeout(r, 1500))
      await send(5)
      await fwd.until(10 * uids, 30_000)
      await waitFor(() => master.stats().sessions?.dirty === 0, { timeoutMs: 20_000 })
      expect(master.stats().sessions).toMatchObject({ fenced: 0 })
      await master.stop()
      const handled = highestCounts(replies(fwd.messages), true)
      const redis = new RedisStorage({ url: server.url, prefix })
      await redis.open()
      try {
        for (let u = 1; u <= uids; u++) expect(await storedCount(redis, u), `uid ${u}`).toBe(handled.get(u))
      } finally {
        await redis.close()
      }
      const told = lines.filter((l) => l.includes('PEONY_STORAGE_DATA_LOST'))
      expect(told, 'told once').toHaveLength(1)
      expect(JSON.parse(told[0]!)).toMatchObject({ level: 40, code: 'PEONY_STORAGE_DATA_LOST', msg: expect.stringContaining('lost its data') })
    } finally {
      await server.stop()
    }
  }, 60_000)
})
