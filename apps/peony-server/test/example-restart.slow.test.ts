/**
 * The idle-rpg example on the real server process, with real storage: players enter and play,
 * the server stops (SIGTERM: every changed session is written) and starts again on the same
 * storage, and the players find their cultivators as they left them. A meditating cultivator's
 * durable `circuit` timer (shortened to CIRCUIT_MS_TEST through IDLE_RPG_CIRCUIT_MS) fell due
 * many times while the server was down: those circuits all fire when the session is loaded,
 * before the first reply. Runs on LevelDB in a temporary directory, and on Redis (a unique key
 * prefix, deleted afterwards) when one answers.
 */
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { redisForTests, sleep, tempDir } from '@peony/test-utils'
import { startFakeForwarder, type FakeForwarder } from '@peony/fake-forwarder'
import { deleteRedisKeys, GameClient } from './helpers/game-client.ts'
import { freePort, run, type Run } from './helpers/run-server.ts'

/** The circuit length of these tests, ms. */
const CIRCUIT_MS_TEST = 200

const redis = await redisForTests()
const redisPrefix = `peony-test:server:${process.pid}:`
afterAll(async () => {
  if (redis !== undefined) await deleteRedisKeys(redis.url, redisPrefix)
  await redis?.stop()
})

let fwd: FakeForwarder | undefined
let client: GameClient | undefined
afterEach(async () => {
  client?.close()
  client = undefined
  await fwd?.close()
  fwd = undefined
})

interface Status {
  name: string
  realm: string
  qi: number
  pendingQi: number
  meditating: boolean
  circuits: number
}

async function startServer(storageArgs: string[], intake: string, forwarder: string): Promise<Run> {
  const r = run(['--intake', intake, '--forwarder', forwarder, '--workers', '2', '--log-level', 'warn', ...storageArgs], {
    IDLE_RPG_CIRCUIT_MS: String(CIRCUIT_MS_TEST),
  })
  await r.line(/^peony ready: /)
  return r
}

const storages: [string, () => string[]][] = [['leveldb', () => ['--storage', 'leveldb', '--storage-path', join(tempDir(), 'db')]]]
if (redis !== undefined)
  storages.push(['redis', () => ['--storage', 'redis', '--redis-url', redis.url, '--redis-prefix', `${redisPrefix}${Math.random().toString(36).slice(2)}:`]])

describe.each(storages)('idle-rpg on a real server across a restart (%s)', (_name, storageArgs) => {
  it('keeps every cultivator, and fires the circuits that fell due while the server was down', async () => {
    const args = storageArgs()
    fwd = await startFakeForwarder()
    const intake = `tcp://127.0.0.1:${await freePort()}`
    const first = await startServer(args, intake, fwd.endpoint)
    client = new GameClient(intake, fwd)
    const c = client

    // Four players (spread over both workers); 101 meditates, 102 breaks through.
    const tEnter = Date.now()
    let tEntered = 0 // 101 was created between tEnter and tEntered
    for (const uid of [101, 102, 103, 104]) {
      expect(await c.request(uid, 'player.enter', { name: `P${uid}` }), `enter ${uid}`).toMatchObject({ ret: 0, data: { name: `P${uid}`, qi: 0 } })
      if (uid === 101) tEntered = Date.now()
    }
    const tMeditateSent = Date.now()
    expect(await c.request(101, 'cultivate.meditate')).toMatchObject({ ret: 0, data: { meditating: true } })
    const tMeditated = Date.now()
    await sleep(1200)
    const collected = (await c.request(102, 'cultivate.collect')) as { ret: number; data: { qi: number } }
    expect(collected.data.qi).toBeGreaterThanOrEqual(1)
    const before = (await c.request(101, 'cultivate.status')).data as Status
    expect(before.circuits).toBeGreaterThanOrEqual(3)

    // Graceful stop: every changed session is written before the storage closes.
    first.child.kill('SIGTERM')
    expect(await first.exit).toEqual({ code: 0, signal: null })
    const tStopped = Date.now()
    await sleep(2000) // ten circuits while nothing runs

    await startServer(args, intake, fwd.endpoint)
    const tAsked = Date.now()
    const after = (await c.request(101, 'cultivate.status')).data as Status
    const tAnswered = Date.now()
    expect(after).toMatchObject({ name: 'P101', realm: 'Mortal', meditating: true })
    // The timer's due times are tSet + k·CIRCUIT_MS (tSet between tMeditateSent and tMeditated);
    // every one up to the load fired before this reply, those of the down time included.
    expect(after.circuits).toBeGreaterThanOrEqual(Math.floor((tAsked - tMeditated) / CIRCUIT_MS_TEST))
    expect(after.circuits).toBeLessThanOrEqual(Math.floor((tAnswered - tMeditateSent) / CIRCUIT_MS_TEST) + 1)
    expect(after.circuits - before.circuits).toBeGreaterThanOrEqual(Math.floor((tAsked - tStopped) / CIRCUIT_MS_TEST))
    // Qi: 1 per second since entering (each circuit banked it at its own time) plus 10 per circuit.
    const base = after.qi + after.pendingQi - 10 * after.circuits
    expect(base).toBeGreaterThanOrEqual(Math.floor((tAsked - tEntered) / 1000))
    expect(base).toBeLessThanOrEqual(Math.ceil((tAnswered - tEnter) / 1000))

    // The others are as they were: 102 kept what it collected, none meditates, all are known.
    const p102 = (await c.request(102, 'cultivate.status')).data as Status
    expect(p102).toMatchObject({ name: 'P102', meditating: false, circuits: 0 })
    expect(p102.qi).toBe(collected.data.qi)
    for (const uid of [103, 104]) expect(await c.request(uid, 'cultivate.status')).toMatchObject({ ret: 0, data: { name: `P${uid}`, qi: 0 } })
    // A uid that never entered is still asked to enter.
    expect(await c.request(105, 'cultivate.status')).toMatchObject({ ret: 1 })
  }, 60_000)
})
