/**
 * The output gate's promise under a crash (docs/sessions.md, "Output gate"), on the real server
 * process: brokers keep gated `buy` requests outstanding for 2,000 players (closed loop, two per
 * player) for a few seconds, and the whole server process is SIGKILLed mid-load. Write-behind
 * could not have saved anything (`--max-unflushed-age-ms` is an hour): only the gate writes.
 * Afterwards the storage is opened, and for every player the stored counter must be at least the
 * highest value that player was ever answered with (ret 0): every acknowledged change is stored.
 * Once on LevelDB, once on a redis-server the test starts (no persistence needed: the server
 * process is killed, not Redis).
 *
 * Each case prints one JSON line: buys acknowledged, changes stored in all, changes lost (acknowledged
 * but not stored), changes stored but not acknowledged, latency of the gated answers.
 */
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startRedisServer, sleep, tempDir, type RedisServer } from '@peony/test-utils'
import { startFakeForwarder, type FakeForwarder } from '@peony/fake-forwarder'
import type { AbstractStorage } from '@peony/storage'
import { LevelStorage } from '@peony/storage/leveldb'
import { RedisStorage } from '@peony/storage/redis'
import { freePort, run } from './helpers/run-server.ts'
import { closedLoop, Conn, everyOnce, Ledger, storedCounters } from './helpers/counter-load.ts'

const APP = 'test/fixtures/gate-app.ts'
const PLAYERS = 2000
const CONNS = 4
/** Requests outstanding per player. */
const WINDOW = 2
/** Load before the kill. */
const LOAD_MS = 4000

let fwd: FakeForwarder | undefined
let redis: RedisServer | undefined
const conns: Conn[] = []
afterEach(async () => {
  for (const c of conns.splice(0)) c.close()
  await fwd?.close()
  fwd = undefined
  await redis?.stop()
  redis = undefined
})

async function killUnderLoad(kind: 'leveldb' | 'redis'): Promise<void> {
  fwd = await startFakeForwarder()
  const ledger = new Ledger(fwd)
  const intake = `tcp://127.0.0.1:${await freePort()}`
  const db = join(tempDir(), 'db')
  const prefix = `peony-gatetest:${process.pid}:kill:`
  let storageArgs: string[]
  let openStorage: () => AbstractStorage
  if (kind === 'leveldb') {
    storageArgs = ['--storage', 'leveldb', '--storage-path', db]
    openStorage = () => new LevelStorage({ location: db })
  } else {
    redis = await startRedisServer()
    const url = redis.url
    storageArgs = ['--storage', 'redis', '--redis-url', url, '--redis-prefix', prefix]
    openStorage = () => new RedisStorage({ url, prefix })
  }
  const server = run([
    '--app',
    APP,
    '--intake',
    intake,
    '--forwarder',
    fwd.endpoint,
    '--workers',
    '2',
    '--log-level',
    'info',
    ...storageArgs,
    // Write-behind would not write anything for an hour: what is stored, the gate wrote.
    '--max-unflushed-age-ms',
    '3600000',
    '--session-idle-timeout-ms',
    '0',
    '--max-queue-wait-ms',
    '0',
  ])
  await server.line(/^peony ready: /)
  for (let c = 0; c < CONNS; c++) conns.push(new Conn(intake))
  const players = Array.from({ length: PLAYERS }, (_, i) => ledger.player(i + 1))
  // Every player's session loaded first (an ungated `get`), so the load measures gated buys only.
  await everyOnce(ledger, conns, players, 'get')
  const loadFrom = ledger.all.length
  const stop = closedLoop(ledger, conns, players, 'buy', WINDOW)
  await sleep(LOAD_MS)
  const answeredAtKill = ledger.all.length
  server.child.kill('SIGKILL')
  const exit = await server.exit
  stop()
  // Answers the server sent before it died may still be on their way.
  await sleep(300)
  ledger.collect()

  const stored = await storedCounters(
    openStorage(),
    players.map((p) => p.uid),
  )
  const acked = ledger.highest()
  const lost: { uid: number; answered: number; stored: number | undefined }[] = []
  let lostChanges = 0
  let ahead = 0
  let storedTotal = 0
  for (const p of players) {
    const a = acked.get(p.uid) ?? 0
    const s = stored.get(p.uid) ?? 0
    storedTotal += s
    if (s < a) {
      lost.push({ uid: p.uid, answered: a, stored: stored.get(p.uid) })
      lostChanges += a - s
    } else if (s > a) ahead += s - a
  }
  // Per player the answers of `buy` are 1, 2, 3, …: a gap or a repeat would be a change applied twice or skipped.
  const buys = ledger.all.slice(loadFrom)
  const countsOf = new Map<number, number[]>()
  for (const a of buys) if (a.ret === 0) (countsOf.get(a.uid) ?? countsOf.set(a.uid, []).get(a.uid)!).push(a.count!)
  let notConsecutive = 0
  for (const counts of countsOf.values()) if (counts.sort((x, y) => x - y).some((c, i) => c !== i + 1)) notConsecutive++
  const byRet = ledger.byRet()
  const acknowledged = buys.filter((a) => a.ret === 0).length
  const lat = ledger.latency((a, s) => a.ret === 0 && s.cmd === 'buy')
  console.log(
    JSON.stringify({
      test: `SIGKILL under gated load (${kind})`,
      players: PLAYERS,
      window: WINDOW,
      loadMs: LOAD_MS,
      buysSent: ledger.sent.size - PLAYERS,
      acknowledged,
      acknowledgedPerSec: Math.round(acknowledged / (LOAD_MS / 1000)),
      answeredAfterKill: ledger.all.length - answeredAtKill,
      answersByRet: byRet,
      storedTotal,
      answeredTwice: ledger.answeredTwice(),
      playersWithLoss: lost.length,
      changesLost: lostChanges,
      example: lost[0],
      storedNotAcknowledged: ahead,
      notConsecutive,
      latencyMs: lat,
      exit,
    }),
  )
  expect(exit.signal).toBe('SIGKILL')
  expect(acknowledged).toBeGreaterThan(PLAYERS * 5)
  expect(lost).toEqual([])
  expect(notConsecutive).toBe(0)
  expect(ledger.answeredTwice()).toBe(0)
  expect(Object.keys(byRet)).toEqual(['0'])
}

describe('output gate: SIGKILL of the server under gated load; every acknowledged change is stored', () => {
  it('LevelDB', async () => {
    await killUnderLoad('leveldb')
  }, 60_000)

  it('Redis', async () => {
    await killUnderLoad('redis')
  }, 60_000)
})
