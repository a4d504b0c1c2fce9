/**
 * Durability of the players' sessions on the real server process with LevelDB:
 * - SIGTERM with 100,000 dirty sessions (nothing flushed yet): every one is written before exit;
 * - SIGKILL: what changed more than the flush bound (maxUnflushedAgeMs + flushIntervalMs) before
 *   the kill is in storage; only the last moments are lost.
 * Counters in the sessions are compared with the replies the clients got.
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import * as zmq from 'zeromq'
import { sleep, tempDir } from '@peony/test-utils'
import { startFakeForwarder, type FakeForwarder } from '@peony/fake-forwarder'
import { encodeTaskFrames, msgpackBodyCodec, packValue, type Task, unpackValue } from '@peony/protocol'
import { LevelStorage } from '@peony/storage/leveldb'
import { freePort, run, type Run } from './helpers/run-server.ts'

/** The master's session test app: a counter per player, incremented by every `count` request. */
const COUNTER_APP = fileURLToPath(new URL('../../../packages/master/test/fixtures/session-app.ts', import.meta.url))

let fwd: FakeForwarder | undefined
let dealer: zmq.Dealer | undefined
afterEach(async () => {
  dealer?.close()
  dealer = undefined
  await fwd?.close()
  fwd = undefined
})

async function start(db: string, intake: string, extra: string[]): Promise<Run> {
  const r = run([
    '--app',
    COUNTER_APP,
    '--intake',
    intake,
    '--forwarder',
    fwd!.endpoint,
    '--workers',
    '2',
    '--log-level',
    'info',
    '--storage',
    'leveldb',
    '--storage-path',
    db,
    ...extra,
  ])
  await r.line(/^peony ready: /)
  return r
}

async function send(uidFrom: number, uidTo: number, cmd: string, sn: number): Promise<void> {
  const tasks: Task[] = []
  for (let u = uidFrom; u <= uidTo; u++) tasks.push({ cmd: 10, uid: u, nodeId: 1, connId: u, body: packValue({ cmd, sn, data: null }) })
  for (let i = 0; i < tasks.length; i += 256) for (const f of encodeTaskFrames(tasks.slice(i, i + 256))) await dealer!.send(f)
}

/** The highest counter each uid was answered with. */
function answered(from = 0): Map<number, number> {
  const out = new Map<number, number>()
  for (const m of fwd!.messages.slice(from)) {
    if (m.cmd !== 220) continue
    const b = msgpackBodyCodec.decodeReply(m.body) as { ret: number; data?: { count: number } }
    if (b.ret !== 0 || b.data === undefined) continue
    const uid = Number(m.connId)
    out.set(uid, Math.max(out.get(uid) ?? 0, b.data.count))
  }
  return out
}

async function storedCounts(db: string, uids: number): Promise<(number | undefined)[]> {
  const level = new LevelStorage({ location: db })
  await level.open()
  try {
    const keys = Array.from({ length: uids }, (_, i) => `player:${i + 1}`)
    const values = await level.getMany(keys)
    return values.map((v) => (v === undefined ? undefined : (unpackValue((unpackValue(v) as [number, Uint8Array])[1]) as { count: number }).count))
  } finally {
    await level.close()
  }
}

describe('session durability on the real server (LevelDB)', () => {
  it('SIGTERM with 100,000 dirty sessions: every one is written before exit', async () => {
    const N = 100_000
    const db = join(tempDir(), 'db')
    fwd = await startFakeForwarder()
    const intake = `tcp://127.0.0.1:${await freePort()}`
    // Nothing is flushed before the stop: the unflushed-age bound is an hour.
    // Cold loads of 5,000 players per window may wait past the default queue-wait bound: off here.
    const server = await start(db, intake, ['--max-unflushed-age-ms', '3600000', '--session-idle-timeout-ms', '0', '--max-queue-wait-ms', '0'])
    dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 0 })
    dealer.connect(intake)
    // In windows the master's queues take (10,000 per worker), so nothing is refused.
    for (let u = 1; u <= N; u += 5000) {
      await send(u, Math.min(N, u + 4999), 'count', 1)
      await fwd.until(Math.min(N, u + 4999), 60_000)
    }
    expect([...answered().values()].filter((c) => c === 1).length).toBe(N)
    server.child.kill('SIGTERM')
    const { code } = await server.exit
    expect(code).toBe(0)
    const stopped = server
      .stdout()
      .split('\n')
      .find((l) => l.includes('"msg":"stopped"'))
    expect(stopped).toBeDefined()
    const sessions = (JSON.parse(stopped!) as { stats: { sessions: { flushedSessions: number; dirty: number; loads: number } } }).stats.sessions
    expect(sessions).toMatchObject({ loads: N, flushedSessions: N, dirty: 0 })
    const counts = await storedCounts(db, N)
    expect(counts.filter((c) => c === 1).length).toBe(N)
  }, 240_000)

  it('SIGKILL: every change older than the flush bound survives; the restarted server continues from storage', async () => {
    const UIDS = 2000
    const db = join(tempDir(), 'db')
    fwd = await startFakeForwarder()
    const intake = `tcp://127.0.0.1:${await freePort()}`
    const server = await start(db, intake, ['--flush-interval-ms', '200', '--max-unflushed-age-ms', '500', '--max-queue-wait-ms', '0'])
    dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 0 })
    dealer.connect(intake)
    for (let i = 1; i <= 5; i++) await send(1, UIDS, 'count', i)
    await fwd.until(5 * UIDS, 60_000)
    await sleep(1500) // past the bound: 500 + 200 ms, plus the write itself
    await send(1, UIDS, 'count', 6) // the last moments: may be lost
    await sleep(20)
    server.child.kill('SIGKILL')
    await server.exit
    const before = answered()
    const counts = await storedCounts(db, UIDS)
    for (let u = 1; u <= UIDS; u++) {
      const c = counts[u - 1]
      expect(c, `uid ${u}`).toBeGreaterThanOrEqual(5)
      expect(c, `uid ${u}`).toBeLessThanOrEqual(before.get(u) ?? 5)
    }
    // The restarted server (the LevelDB lock of the killed process is gone) continues from storage.
    const again = await start(db, intake, [])
    const seen = fwd.messages.length
    await send(1, 10, 'get', 7)
    await fwd.until(seen + 10, 30_000)
    const after = answered(seen)
    for (let u = 1; u <= 10; u++) expect(after.get(u)).toBe(counts[u - 1])
    again.child.kill('SIGTERM')
    expect((await again.exit).code).toBe(0)
  }, 120_000)
})
