/**
 * The session lifecycle with a real LevelDB on disk (issue 9):
 *
 * - every way user code reaches a resident session (an on-hook task, a `{ session: false }`
 *   route, in-memory and durable session timers, `worker.sessions.get` / `def.resident` from
 *   another player or a worker timer) gets its change written before the session is evicted:
 *   each change is read back from the LevelDB directory, reopened, after the eviction;
 * - an eviction whose write lands while the player's lane is busy (an async session timer) ends
 *   evicted or cancelled, never stuck half-way, and the `maxSessions` limit counts only what is
 *   really gone.
 *
 * Time moves with the harness's manual clock; the storage is real, so the tests wait for its
 * writes in real time.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { createApp, type PeonyApp, type Session, type SessionDef } from '@peony/worker'
import { createTestHarness, type TestHarness } from '@peony/worker/testing'
import { LevelStorage } from '@peony/storage/leveldb'
import { unpackValue } from '@peony/protocol'

interface Player {
  n: number
  notes: Record<string, unknown>
}

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function levelDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'peony-sess-'))
  dirs.push(d)
  return d
}

/** Reads the stored states of `keys` from the LevelDB directory, opened afresh (the harness's handle is closed first). */
async function readBack(dir: string, keys: string[]): Promise<Record<string, Player | undefined>> {
  const level = new LevelStorage({ location: dir })
  await level.open()
  try {
    const out: Record<string, Player | undefined> = {}
    for (const k of keys) {
      const bytes = await level.get(k)
      out[k] = bytes === undefined ? undefined : (unpackValue((unpackValue(bytes) as [number, Uint8Array])[1]) as Player)
    }
    return out
  } finally {
    await level.close()
  }
}

/** Whether uid is resident, without marking it dirty (`has`; on a runtime without it, `get`, which did not mark). */
function resident(h: TestHarness, uid: number): boolean {
  const m = h.worker.sessions as { has?: (uid: number) => boolean }
  return typeof m.has === 'function' ? m.has(uid) : h.worker.sessions.get(uid) !== undefined
}

/** Whether uid's resident session carries the EVICTING flag (an internal: session.ts's flag 2). */
function evicting(h: TestHarness, uid: number): boolean {
  const m = h.worker.sessions as unknown as { residentAt?: (lane: number) => { _flags: number } | undefined }
  const s = typeof m.residentAt === 'function' ? m.residentAt(uid) : (h.worker.sessions.get(uid) as unknown as { _flags: number } | undefined)
  return s !== undefined && (s._flags & 2) !== 0
}

/** Waits (real time) until `cond` holds; storage writes are real I/O. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

function baseApp(): { app: PeonyApp; def: SessionDef<Player> } {
  const app = createApp()
  const def = app.session<Player>({
    initial: () => ({ n: 0, notes: {} }),
    timers: {
      async bonus(s) {
        // A durable timer whose change comes after an await (a flush may run meanwhile).
        await s.worker.sleep(500)
        s.state.notes.durable = 'after await'
      },
    },
  })
  app.route('inc', (req) => {
    def.of(req).state.n++
    req.reply(def.of(req).state.n)
  })
  return { app, def }
}

async function started(app: PeonyApp, dir: string, sessions: Record<string, number> = {}): Promise<{ h: TestHarness; storage: LevelStorage }> {
  const storage = new LevelStorage({ location: dir })
  const h = createTestHarness(app, { sessions: { storage, maxUnflushedAgeMs: 60_000, idleTimeoutMs: 0, ...sessions } })
  await h.ready
  return { h, storage }
}

/** Loads uid's session, changes it and writes it, so that it is resident and clean. */
async function residentClean(h: TestHarness, uid: number): Promise<void> {
  await h.inject({ cmd: 'inc', uid })
  await h.worker.sessions.flush()
  expect(resident(h, uid)).toBe(true)
  expect(h.stats().sessions?.dirty).toBe(0)
}

async function evictAndReadBack(h: TestHarness, storage: LevelStorage, dir: string, uid: number): Promise<Player | undefined> {
  await h.advance(0) // the lane winds down after its last task settled
  expect(await h.worker.sessions.evict(uid)).toBe(true)
  expect(resident(h, uid)).toBe(false)
  await h.stop()
  await storage.close()
  return (await readBack(dir, [`player:${uid}`]))[`player:${uid}`]
}

describe('a change to a resident session is written before its eviction, whoever makes it', () => {
  test('onClientClosed records the logout time; the close-grace eviction writes it', async () => {
    const { app, def } = baseApp()
    app.addHook('onClientClosed', (req) => {
      if (req.session !== undefined) (req.session as Session<Player>).state.notes.logoutAt = req.worker.clock.now()
    })
    void def
    const dir = levelDir()
    const { h, storage } = await started(app, dir, { closeGraceMs: 5000 })
    await residentClean(h, 1)
    await h.advance(1000)
    await h.inject({ taskCmd: 20, uid: 1 })
    const at = h.clock.now()
    await h.advance(6000) // the tick after the grace period evicts the player
    await until(() => h.stats().sessions?.resident === 0, 'the close-grace eviction')
    expect(h.stats().sessions?.evictions.closed).toBe(1)
    await h.stop()
    await storage.close()
    expect((await readBack(dir, ['player:1']))['player:1']).toEqual({ n: 1, notes: { logoutAt: at } })
  })

  test('onClientCreated and onTask hooks', async () => {
    const { app } = baseApp()
    app.addHook('onClientCreated', (req) => {
      ;(req.session as Session<Player>).state.notes.created = true
    })
    app.onTask(async (req) => {
      await Promise.resolve()
      ;(req.session as Session<Player>).state.notes[`task${req.taskCmd}`] = req.data ?? true
    })
    const dir = levelDir()
    const { h, storage } = await started(app, dir)
    await residentClean(h, 1)
    await h.inject({ taskCmd: 15, uid: 1 })
    await h.worker.sessions.flush()
    await h.inject({ taskCmd: 77, uid: 1 })
    expect(await evictAndReadBack(h, storage, dir, 1)).toEqual({ n: 1, notes: { created: true, task77: true } })
  })

  test('a { session: false } route and its preRequest / onRequestEnd hooks', async () => {
    const { app } = baseApp()
    app.route(
      'note',
      (req) => {
        if (req.session !== undefined) (req.session as Session<Player>).state.notes.route = req.data
      },
      { session: false },
    )
    app.addHook('onRequestEnd', (req) => {
      if (req.route?.name === 'note' && req.session !== undefined) (req.session as Session<Player>).state.notes.end = true
    })
    const dir = levelDir()
    const { h, storage } = await started(app, dir)
    await residentClean(h, 1)
    await h.inject({ cmd: 'note', uid: 1, data: 'x' })
    expect(await evictAndReadBack(h, storage, dir, 1)).toEqual({ n: 1, notes: { route: 'x', end: true } })
  })

  test('in-memory session timers, synchronous and with a change after an await', async () => {
    const { app, def } = baseApp()
    app.route('arm', (req) => {
      const s = def.of(req)
      s.timers.once(1000, () => {
        s.state.notes.once = true
      })
      s.timers.once(2000, async () => {
        await s.worker.sleep(100)
        s.state.notes.async = true
      })
    })
    const dir = levelDir()
    const { h, storage } = await started(app, dir)
    await h.inject({ cmd: 'arm', uid: 1 })
    await h.worker.sessions.flush()
    await h.advance(1000)
    await h.worker.sessions.flush()
    await h.advance(1500)
    expect(h.stats().sessions?.timersFired).toBe(2)
    expect(await evictAndReadBack(h, storage, dir, 1)).toEqual({ n: 0, notes: { once: true, async: true } })
  })

  test('a durable timer whose handler changes the state after an await, with a flush in between', async () => {
    const { app, def } = baseApp()
    app.route('arm', (req) => void def.of(req).timers.set('bonus', { in: 1000 }))
    const dir = levelDir()
    const { h, storage } = await started(app, dir)
    await h.inject({ cmd: 'arm', uid: 1 })
    await h.worker.sessions.flush()
    await h.advance(1000) // fires; the handler sleeps 500 ms
    await h.worker.sessions.flush() // writes the firing (timer removed), before the change
    await h.advance(500)
    expect(await evictAndReadBack(h, storage, dir, 1)).toEqual({ n: 0, notes: { durable: 'after await' } })
  })

  test('worker.sessions.get / def.resident from another player’s route and from a worker timer', async () => {
    const { app, def } = baseApp()
    app.route('gift', (req) => {
      const other = def.resident(req.worker, req.data as number)
      if (other !== undefined) other.state.notes.gift = req.uid
    })
    app.addHook('onWorkerStart', (worker) => {
      worker.timers.once(3000, () => {
        const s = worker.sessions.get(1) as Session<Player> | undefined
        if (s !== undefined) s.state.notes.timer = true
      })
    })
    const dir = levelDir()
    const { h, storage } = await started(app, dir)
    await residentClean(h, 1)
    await h.inject({ cmd: 'gift', uid: 2, data: 1 })
    await h.worker.sessions.flush()
    await h.advance(3000)
    expect(await evictAndReadBack(h, storage, dir, 1)).toEqual({ n: 1, notes: { gift: 2, timer: true } })
  })
})

describe('an eviction whose write lands while the lane is busy', () => {
  test('is cancelled, then done once the lane is free; maxSessions evicts the least recently used players', async () => {
    const { app, def } = baseApp()
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    app.route('hold', (req) => {
      const s = def.of(req)
      // Due just after the tick that starts the eviction: holds the lane while its write is in flight.
      s.timers.once(1500, async () => {
        await held
        s.state.notes.held = true
      })
    })
    const dir = levelDir()
    const { h, storage } = await started(app, dir, { maxSessions: 2 })
    await h.inject({ cmd: 'hold', uid: 1 }) // t=0: uid 1, dirty, its timer due at t=1500
    await h.inject({ cmd: 'inc', uid: 2 })
    await h.inject({ cmd: 'inc', uid: 3 }) // three resident, maxSessions 2: uid 1 is the least recently used
    // One synchronous step: the tick at t=1000 starts evicting uid 1 (its write goes to LevelDB),
    // and the timer at t=1500 takes uid 1's lane before the write can land.
    h.clock.advance(1500)
    const st = () => h.stats().sessions!
    await until(() => st().flushedSessions >= 1, 'the eviction write')
    await new Promise((r) => setTimeout(r, 20))
    // The write landed with the lane busy: uid 1 is still resident, and not counted as gone.
    expect(resident(h, 1)).toBe(true)
    expect(st()).toMatchObject({ resident: 3, evictions: { memory: 0 } })
    // ... and no longer marked evicting: the eviction was cancelled, not left half-done.
    expect(evicting(h, 1)).toBe(false)
    release()
    await h.advance(0)
    // The next tick evicts the least recently used player (uid 1), writing its new change first.
    await h.advance(1000)
    await until(() => st().resident === 2, 'the retried eviction')
    expect(resident(h, 1)).toBe(false)
    expect(resident(h, 2)).toBe(true)
    expect(resident(h, 3)).toBe(true)
    expect(st().evictions.memory).toBe(1)
    // More players: the limit keeps counting what is resident, least recently used first.
    await h.advance(1000)
    await h.inject({ cmd: 'inc', uid: 4 })
    await h.inject({ cmd: 'inc', uid: 5 })
    await h.advance(1000)
    await until(() => st().resident === 2, 'the evictions of uids 2 and 3')
    expect([2, 3, 4, 5].map((u) => resident(h, u))).toEqual([false, false, true, true])
    expect(st().evictions.memory).toBe(3)
    await h.stop()
    await storage.close()
    const back = await readBack(dir, ['player:1', 'player:2', 'player:3'])
    expect(back['player:1']).toEqual({ n: 0, notes: { held: true } })
    expect(back['player:2']).toEqual({ n: 1, notes: {} })
    expect(back['player:3']).toEqual({ n: 1, notes: {} })
  })
})

describe('an eviction whose write failed', () => {
  test('while writes back off it is cancelled, and a clean player is evicted in its place', async () => {
    const { app } = baseApp()
    const dir = levelDir()
    const { h, storage } = await started(app, dir, { maxSessions: 2, retryBaseMs: 5000, retryMaxMs: 5000 })
    for (const uid of [1, 2, 3]) await h.inject({ cmd: 'inc', uid }) // t=0: LRU order 1, 2, 3
    await h.worker.sessions.flush()
    await h.inject({ cmd: 'inc', uid: 1 }) // dirty again, still the least recently used
    await storage.close() // writes now fail (PEONY_STORAGE_NOT_OPEN): the real driver, closed
    const st = () => h.stats().sessions!
    h.clock.advance(1000) // the tick starts evicting uid 1: its write fails, writes back off 5 s
    await until(() => st().flushErrors === 1, 'the failed eviction write')
    await h.advance(1000) // a tick while backing off
    expect(evicting(h, 1)).toBe(false)
    expect([1, 2, 3].map((u) => resident(h, u))).toEqual([true, false, true])
    expect(st()).toMatchObject({ resident: 2, retrying: 1, evictions: { memory: 1 } })
    await storage.open()
    await h.advance(5000) // the retry writes uid 1; it stays (the limit holds)
    await until(() => st().retrying === 0 && st().dirty === 0, 'the retried write')
    expect([1, 2, 3].map((u) => resident(h, u))).toEqual([true, false, true])
    await h.stop()
    await storage.close()
    expect((await readBack(dir, ['player:1']))['player:1']).toEqual({ n: 2, notes: {} })
  })
})

describe('a change nobody marked is still written at eviction and at stop', () => {
  test('a change through a session object kept past its request (a promise the handler did not return)', async () => {
    const { app, def } = baseApp()
    let later!: () => void
    const gate = new Promise<void>((r) => (later = r))
    app.route('fireAndForget', (req) => {
      const s = def.of(req)
      void gate.then(() => {
        s.state.notes.late = true
      })
    })
    const dir = levelDir()
    const { h, storage } = await started(app, dir)
    await h.inject({ cmd: 'fireAndForget', uid: 1 })
    await h.worker.sessions.flush() // the request's mark is written: clean
    later()
    await h.advance(0)
    expect(h.stats().sessions?.dirty).toBe(0)
    expect(await evictAndReadBack(h, storage, dir, 1)).toEqual({ n: 0, notes: { late: true } })
    expect(h.stats().sessions?.unmarkedChanges).toBe(1)
    expect(h.logs.some((e) => (e.obj as { code?: string }).code === 'PEONY_SESSION_UNMARKED_CHANGE')).toBe(true)
  })

  test("dirty: 'manual' without markDirty(): written at the idle eviction; an unchanged session is not written again", async () => {
    const app = createApp()
    const def = app.session<Player>({ initial: () => ({ n: 0, notes: {} }), dirty: 'manual' })
    app.route('forget', (req) => void def.of(req).state.n++) // no markDirty()
    app.route('read', (req) => req.reply(def.of(req).state.n))
    const dir = levelDir()
    const { h, storage } = await started(app, dir, { idleTimeoutMs: 10_000 })
    await h.inject({ cmd: 'forget', uid: 1 })
    await h.inject({ cmd: 'read', uid: 2 }) // a new player that changed nothing: nothing to write
    expect(h.stats().sessions?.dirty).toBe(0)
    await h.advance(11_000)
    await until(() => h.stats().sessions?.resident === 0, 'the idle evictions')
    expect(h.stats().sessions).toMatchObject({ unmarkedChanges: 1, flushedSessions: 1, evictions: { idle: 2 } })
    // Loaded again and only read: its record is what storage has, so the next eviction writes nothing.
    expect((await h.inject({ cmd: 'read', uid: 1 })).replies[0]?.data).toBe(1)
    await h.advance(11_000)
    await until(() => h.stats().sessions?.resident === 0, 'the second idle eviction')
    expect(h.stats().sessions).toMatchObject({ unmarkedChanges: 1, flushedSessions: 1, evictions: { idle: 3 } })
    await h.stop()
    await storage.close()
    expect(await readBack(dir, ['player:1', 'player:2'])).toEqual({ 'player:1': { n: 1, notes: {} }, 'player:2': undefined })
  })

  test('stop writes a clean session changed without a mark', async () => {
    const { app } = baseApp()
    const dir = levelDir()
    const { h, storage } = await started(app, dir)
    await residentClean(h, 1)
    await residentClean(h, 2)
    const kept = h.worker.sessions.get(1) as Session<Player> // marks it (auto) ...
    await h.worker.sessions.flush() // ... and this writes it: clean again
    kept.state.notes.afterFlush = true // a change through the kept object: nobody marks it
    await h.stop()
    expect(h.stats().sessions).toMatchObject({ unmarkedChanges: 1, dirty: 0 })
    await storage.close()
    expect(await readBack(dir, ['player:1', 'player:2'])).toEqual({ 'player:1': { n: 1, notes: { afterFlush: true } }, 'player:2': { n: 1, notes: {} } })
  })
})
