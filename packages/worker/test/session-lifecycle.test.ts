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
import { unpackValue } from '@peony/broker-client/codec'

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
