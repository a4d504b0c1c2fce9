/**
 * The loss bound of a worker killed for blocking its event loop, under load (docs/sessions.md,
 * write-behind table: "no change acknowledged more than maxUnflushedAgeMs + flushIntervalMs
 * before the worker's loop stopped turning ... is lost"), on the real server process with
 * LevelDB. Brokers keep ungated `inc` requests outstanding for 2,000 players (closed loop) with
 * `--flush-interval-ms 200 --max-unflushed-age-ms 1000 --blocked-timeout-ms 3000`; after a few
 * seconds a `block` request stops one worker's loop for good (its handler first appends the time
 * and its thread id to a marks file), the master kills that worker after 3 s and a new one takes
 * its players, the load goes on for a second, then the server stops gracefully.
 *
 * Per player of the dead worker (the answers carry the answering thread's id), what storage held
 * when the worker died is read off the first answer of its replacement (it loaded the player from
 * storage: that answer is the stored counter + 1), and cross-checked with the counter stored at
 * the end (= that + the replacement's increments). Every change acknowledged (answer ret 0, as
 * read by the test, so never earlier than really acknowledged) more than 1,200 ms before the
 * block began must be in it. Changes acknowledged later may be lost; the test reports how many,
 * and how long before the block the oldest of them was acknowledged. The players of the other
 * worker: stored counter = last answer (the graceful stop writes everything).
 *
 * Prints one JSON line with the figures.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { sleep, tempDir, waitFor } from '@peony/test-utils'
import { startFakeForwarder, type FakeForwarder } from '@peony/fake-forwarder'
import { LevelStorage } from '@peony/storage/leveldb'
import { freePort, run } from './helpers/run-server.ts'
import { closedLoop, Conn, everyOnce, Ledger, logLines, storedCounters, type Answer } from './helpers/counter-load.ts'

const APP = 'test/fixtures/gate-app.ts'
const PLAYERS = 2000
const CONNS = 4
const WINDOW = 2
const FLUSH_INTERVAL_MS = 200
const MAX_UNFLUSHED_AGE_MS = 1000
const BLOCKED_TIMEOUT_MS = 3000
const BOUND_MS = MAX_UNFLUSHED_AGE_MS + FLUSH_INTERVAL_MS
/** Load before the block. */
const LOAD_MS = 3000
/** Load after the death. */
const AFTER_MS = 1000

let fwd: FakeForwarder | undefined
const conns: Conn[] = []
afterEach(async () => {
  for (const c of conns.splice(0)) c.close()
  await fwd?.close()
  fwd = undefined
})

describe('crash loss bound: a worker blocked under load, then killed by the master (LevelDB)', () => {
  it('every change acknowledged more than maxUnflushedAgeMs + flushIntervalMs before the block began is stored', async () => {
    fwd = await startFakeForwarder()
    const ledger = new Ledger(fwd)
    const intake = `tcp://127.0.0.1:${await freePort()}`
    const db = join(tempDir(), 'db')
    const marks = join(tempDir(), 'marks.txt')
    writeFileSync(marks, '')
    const server = run(
      [
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
        '--storage',
        'leveldb',
        '--storage-path',
        db,
        '--session-idle-timeout-ms',
        '0',
        '--flush-interval-ms',
        String(FLUSH_INTERVAL_MS),
        '--max-unflushed-age-ms',
        String(MAX_UNFLUSHED_AGE_MS),
        '--blocked-timeout-ms',
        String(BLOCKED_TIMEOUT_MS),
      ],
      { PEONY_TEST_MARKS: marks },
    )
    await server.line(/^peony ready: /)
    for (let c = 0; c < CONNS; c++) conns.push(new Conn(intake))
    const players = Array.from({ length: PLAYERS }, (_, i) => ledger.player(i + 1))
    // Every player's session loaded first, so the load is at full speed from its start.
    await everyOnce(ledger, conns, players, 'get')
    const stop = closedLoop(ledger, conns, players, 'inc', WINDOW)
    await sleep(LOAD_MS)

    const blocker = ledger.player(1_000_000)
    await conns[0]!.send([ledger.request(blocker, 'block')])
    let blockTs = 0
    let deadTid = -1
    await waitFor(
      () => {
        const m = /blocking \d+ (\d+) (\d+)/.exec(readFileSync(marks, 'utf8'))
        if (m === null) return false
        blockTs = Number(m[1])
        deadTid = Number(m[2])
        return true
      },
      { timeoutMs: 10_000, intervalMs: 2 },
    )
    await server.line(/"msg":"worker died"/)
    const diedAt = Date.now()
    await sleep(AFTER_MS)
    stop()
    // The answers still outstanding, then a graceful stop (which writes every dirty session).
    await waitFor(() => (ledger.collect(), players.every((p) => p.outstanding === 0)), { timeoutMs: 10_000 }).catch(() => {})
    server.child.kill('SIGTERM')
    const exit = await server.exit
    await sleep(100)
    ledger.collect()
    const logs = logLines<{ msg?: string; cause?: string }>(server.stdout())
    const died = logs.filter((l) => l.msg === 'worker died')

    const stored = await storedCounters(
      new LevelStorage({ location: db }),
      players.map((p) => p.uid),
    )

    const byUid = new Map<number, Answer[]>()
    for (const a of ledger.all) {
      if (a.ret !== 0 || a.count === undefined || ledger.sent.get(`${a.uid}:${a.sn}`)?.cmd !== 'inc') continue
      ;(byUid.get(a.uid) ?? byUid.set(a.uid, []).get(a.uid)!).push(a)
    }
    const cutoff = blockTs - BOUND_MS
    let deadPlayers = 0
    let ackedByDead = 0
    let ackedBeforeCutoff = 0
    let lostChanges = 0
    let playersWithLoss = 0
    let oldestLostAckMs = -Infinity
    const beyondBound: { uid: number; storedAtDeath: number; highestBeforeCutoff: number }[] = []
    const inconsistent: { uid: number; storedAtDeath: number; replacementAnswers: number; stored: number | undefined }[] = []
    const liveMismatch: { uid: number; stored: number | undefined; last: number }[] = []
    for (const p of players) {
      const as = byUid.get(p.uid) ?? []
      const pre = as.filter((a) => a.tid === deadTid)
      const s = stored.get(p.uid) ?? 0
      if (pre.length === 0) {
        const last = Math.max(0, ...as.map((a) => a.count!))
        if (s !== last) liveMismatch.push({ uid: p.uid, stored: stored.get(p.uid), last })
        continue
      }
      deadPlayers++
      ackedByDead += pre.length
      const post = as.filter((a) => a.tid !== deadTid)
      // The replacement loaded the player from storage: its first answer is the stored value + 1.
      const storedAtDeath = post.length > 0 ? Math.min(...post.map((a) => a.count!)) - 1 : s
      if (s !== storedAtDeath + post.length) inconsistent.push({ uid: p.uid, storedAtDeath, replacementAnswers: post.length, stored: stored.get(p.uid) })
      const early = pre.filter((a) => a.wall < cutoff)
      ackedBeforeCutoff += early.length
      const highestBeforeCutoff = Math.max(0, ...early.map((a) => a.count!))
      if (storedAtDeath < highestBeforeCutoff) beyondBound.push({ uid: p.uid, storedAtDeath, highestBeforeCutoff })
      const lost = pre.filter((a) => a.count! > storedAtDeath)
      if (lost.length > 0) {
        playersWithLoss++
        lostChanges += lost.length
        oldestLostAckMs = Math.max(oldestLostAckMs, blockTs - Math.min(...lost.map((a) => a.wall)))
      }
    }
    console.log(
      JSON.stringify({
        test: 'crash loss bound (blocked worker, LevelDB)',
        players: PLAYERS,
        flushIntervalMs: FLUSH_INTERVAL_MS,
        maxUnflushedAgeMs: MAX_UNFLUSHED_AGE_MS,
        boundMs: BOUND_MS,
        acknowledged: ledger.all.filter((a) => a.ret === 0).length,
        answersByRet: ledger.byRet(),
        unanswered: ledger.sent.size - ledger.answers.size,
        deadWorkerPlayers: deadPlayers,
        acknowledgedByDeadWorker: ackedByDead,
        acknowledgedBeforeCutoff: ackedBeforeCutoff,
        changesLost: lostChanges,
        playersWithLoss,
        oldestLostAckBeforeBlockMs: Number.isFinite(oldestLostAckMs) ? oldestLostAckMs : null,
        lostBeyondBound: beyondBound.length,
        exampleBeyondBound: beyondBound[0],
        inconsistentAfterRespawn: inconsistent.length,
        exampleInconsistent: inconsistent[0],
        otherWorkerStoredNotLast: liveMismatch.length,
        exampleOtherWorker: liveMismatch[0],
        killedAfterBlockMs: diedAt - blockTs,
        answeredTwice: ledger.answeredTwice(),
        workerDied: died.map((l) => l.cause),
        exit,
      }),
    )
    expect(died.map((l) => l.cause)).toEqual(['blocked'])
    expect(deadPlayers).toBeGreaterThan(PLAYERS / 4)
    // The check has teeth: on average several changes per player acknowledged before the cutoff.
    expect(ackedBeforeCutoff).toBeGreaterThan(deadPlayers)
    expect(beyondBound).toEqual([])
    expect(inconsistent).toEqual([])
    expect(liveMismatch).toEqual([])
    expect(ledger.answeredTwice()).toBe(0)
    expect(exit).toEqual({ code: 0, signal: null })
  }, 60_000)
})
