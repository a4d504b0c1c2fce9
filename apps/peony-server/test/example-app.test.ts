/**
 * The idle-rpg example app, through @peony/worker's test harness (a real WorkerRuntime on a
 * ManualClock, no sockets; sessions in a real MemoryStorage), plus its pure game rules. A
 * restart is two harnesses on one storage: the first stops (writing its sessions), the second
 * loads them on a clock that moved on. The real server process is in example-restart.slow.test.ts.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { createTestHarness, ManualClock, type TestHarness } from '@peony/worker/testing'
import app from '../examples/idle-rpg/app.ts'
import {
  breakthrough,
  CIRCUIT_BONUS_SECONDS,
  CIRCUIT_MS,
  cleanName,
  collect,
  completeCircuit,
  GameRet,
  newCultivator,
  OFFLINE_CAP_MS,
  pendingQi,
  REALMS,
} from '../examples/idle-rpg/game.ts'

const h = createTestHarness(app)
afterAll(() => h.stop())

describe('idle-rpg routes', () => {
  it('binds the uid on auth.login (egress 260) and rejects a bad uid', async () => {
    const ok = await h.inject({ cmd: 'auth.login', data: { uid: 42 }, nodeId: 3, connId: 9 })
    expect(ok.replies).toMatchObject([{ cmd: 'auth.login', ret: 0, data: { uid: 42 } }])
    expect(ok.egress).toContainEqual(expect.objectContaining({ cmd: 260, nodeId: 3, connId: 9, uid: 42 }))
    const bad = await h.inject({ cmd: 'auth.login', data: { uid: -1 } })
    expect(bad.replies).toMatchObject([{ ret: GameRet.BAD_INPUT }])
    expect(bad.egress.some((m) => m.cmd === 260)).toBe(false)
  })

  it('asks to log in and to enter before playing', async () => {
    expect((await h.inject({ cmd: 'cultivate.status' })).replies).toMatchObject([{ ret: GameRet.NOT_LOGGED_IN }])
    expect((await h.inject({ cmd: 'player.enter' })).replies).toMatchObject([{ ret: GameRet.NOT_LOGGED_IN }])
    expect((await h.inject({ cmd: 'cultivate.collect', uid: 1001 })).replies).toMatchObject([{ ret: GameRet.NOT_LOGGED_IN }])
  })

  it('accrues qi on the worker clock, collects it, and breaks through with a push', async () => {
    const uid = 1002
    const enter = await h.inject({ cmd: 'player.enter', uid, data: { name: '  Lin Feng ' } })
    expect(enter.replies).toMatchObject([{ ret: 0, data: { name: 'Lin Feng', realm: 'Mortal', qi: 0, pendingQi: 0 } }])

    await h.advance(50_000) // 50 s at 1 qi/s
    expect((await h.inject({ cmd: 'cultivate.status', uid })).replies).toMatchObject([{ ret: 0, data: { pendingQi: 50, qi: 0 } }])
    expect((await h.inject({ cmd: 'cultivate.breakthrough', uid })).replies).toMatchObject([{ ret: GameRet.NOT_ENOUGH_QI, data: { qi: 50 } }])

    await h.advance(60_000)
    const collected = await h.inject({ cmd: 'cultivate.collect', uid })
    expect(collected.replies).toMatchObject([{ ret: 0, data: { gained: 60, qi: 110 } }])

    const up = await h.inject({ cmd: 'cultivate.breakthrough', uid })
    expect(up.replies).toMatchObject([{ ret: 0, data: { realm: 'Qi Condensation', qi: 10, qiPerSecond: 3 } }])
    expect(up.pushes).toMatchObject([{ cmd: 'cultivate.realmUp', data: { realm: 'Qi Condensation' } }])
  })

  it('keeps the player through a closed connection (task cmd 20)', async () => {
    const uid = 1003
    await h.inject({ cmd: 'player.enter', uid })
    const closed = await h.inject({ taskCmd: 20, uid })
    expect(closed.outcome).toBe('ok')
    expect((await h.inject({ cmd: 'cultivate.status', uid })).replies).toMatchObject([{ ret: 0, data: { name: 'Cultivator 1003' } }])
  })

  it('completes a meditation circuit every CIRCUIT_MS while meditating, and stops on request', async () => {
    const uid = 1004
    await h.inject({ cmd: 'player.enter', uid })
    expect((await h.inject({ cmd: 'cultivate.meditate', uid, data: { on: 'yes' } })).replies).toMatchObject([{ ret: GameRet.BAD_INPUT }])
    expect((await h.inject({ cmd: 'cultivate.meditate', uid })).replies).toMatchObject([{ ret: 0, data: { meditating: true, circuits: 0 } }])
    await h.advance(3 * CIRCUIT_MS)
    // Each circuit banks 60 s at 1 qi/s plus a bonus of 10 s.
    expect((await h.inject({ cmd: 'cultivate.status', uid })).replies).toMatchObject([
      { ret: 0, data: { circuits: 3, qi: 3 * (60 + CIRCUIT_BONUS_SECONDS), pendingQi: 0 } },
    ])
    expect((await h.inject({ cmd: 'cultivate.meditate', uid, data: { on: false } })).replies).toMatchObject([{ ret: 0, data: { meditating: false } }])
    await h.advance(2 * CIRCUIT_MS)
    expect((await h.inject({ cmd: 'cultivate.status', uid })).replies).toMatchObject([{ ret: 0, data: { circuits: 3, pendingQi: 120 } }])
  })

  it('writes only changes: status requests leave the session clean', async () => {
    const uid = 1005
    await h.inject({ cmd: 'player.enter', uid })
    await h.advance(10_000) // past maxUnflushedAgeMs: written
    expect(h.stats().sessions?.dirty).toBe(0)
    await h.inject({ cmd: 'cultivate.status', uid })
    expect(h.stats().sessions?.dirty).toBe(0)
    await h.inject({ cmd: 'cultivate.collect', uid })
    expect(h.stats().sessions?.dirty).toBe(1)
  })
})

describe('idle-rpg across a restart (two harnesses on one storage)', () => {
  const T0 = Date.UTC(2025, 0, 1)

  /** Enters and starts meditating at T0, runs two circuits, then stops (writing the session); returns the storage (a MemoryStorage). */
  async function firstLife(uid: number): Promise<NonNullable<TestHarness['storage']>> {
    const a = createTestHarness(app, { clock: new ManualClock(T0) })
    const storage = a.storage!
    await a.inject({ cmd: 'player.enter', uid, data: { name: 'Han Li' } })
    await a.inject({ cmd: 'cultivate.meditate', uid })
    await a.advance(2 * CIRCUIT_MS)
    expect((await a.inject({ cmd: 'cultivate.status', uid })).replies).toMatchObject([{ data: { circuits: 2, qi: 140 } }])
    await a.stop()
    return storage
  }

  it('keeps the cultivator, and fires the circuits it missed offline when it is loaded again', async () => {
    const uid = 2001
    const storage = await firstLife(uid)
    // Back 5.5 circuits after the stop: five circuits were due meanwhile.
    const b = createTestHarness(app, { clock: new ManualClock(T0 + 2 * CIRCUIT_MS + 5.5 * CIRCUIT_MS), sessions: { storage } })
    const status = await b.inject({ cmd: 'cultivate.status', uid })
    // Every circuit banked the qi due at its own time: 7 × (60 + 10), and 30 s pending since the last.
    expect(status.replies).toMatchObject([{ ret: 0, data: { name: 'Han Li', meditating: true, circuits: 7, qi: 7 * 70, pendingQi: 30 } }])
    expect(b.stats().sessions).toMatchObject({ loads: 1, timersFired: 5 })
    // And it goes on while resident.
    await b.advance(CIRCUIT_MS)
    expect((await b.inject({ cmd: 'cultivate.status', uid })).replies).toMatchObject([{ data: { circuits: 8 } }])
    await b.stop()
  })

  it('catches up at most catchUpLimit circuits; the skipped ones lose their bonus, not the income', async () => {
    const uid = 2002
    const storage = await firstLife(uid)
    const b = createTestHarness(app, { clock: new ManualClock(T0 + 2 * CIRCUIT_MS + 10.5 * CIRCUIT_MS), sessions: { storage, catchUpLimit: 3 } })
    const status = await b.inject({ cmd: 'cultivate.status', uid })
    // Ten circuits were due, three fire: 140 + 600 s of income (the first banks all of it) + 3 bonuses.
    expect(status.replies).toMatchObject([{ ret: 0, data: { circuits: 5, qi: 140 + 600 + 3 * CIRCUIT_BONUS_SECONDS, pendingQi: 30 } }])
    expect(b.logs.some((e) => e.msg === 'circuits past the catch-up limit were skipped' && (e.obj as { skipped?: number }).skipped === 7)).toBe(true)
    await b.stop()
  })
})

describe('idle-rpg rules', () => {
  it('caps idle income at 8 hours', () => {
    const c = newCultivator('x', 0)
    expect(pendingQi(c, 10_000)).toBe(10)
    expect(pendingQi(c, OFFLINE_CAP_MS * 3)).toBe(OFFLINE_CAP_MS / 1000)
    expect(pendingQi(c, -5)).toBe(0) // a clock going back gives nothing
  })

  it('climbs every realm and stops at the last', () => {
    const c = newCultivator('x', 0)
    let now = 0
    for (let realm = 0; realm < REALMS.length - 1; realm++) {
      now += OFFLINE_CAP_MS
      collect(c, now)
      c.qi += REALMS[realm]!.breakthroughCost
      expect(breakthrough(c, now)).toBe(GameRet.OK)
      expect(c.realm).toBe(realm + 1)
    }
    expect(breakthrough(c, now)).toBe(GameRet.MAX_REALM)
  })

  it('keeps the fraction of a qi not yet gathered: collecting often loses nothing', () => {
    const c = newCultivator('x', 0)
    c.realm = 1 // 3 qi/s: a qi every 333.3 ms
    let gained = 0
    for (let t = 250; t <= 10_000; t += 250) gained += collect(c, t)
    expect(gained).toBe(30)
    expect(c.lastCollectAt).toBe(10_000)
  })

  it('completes a circuit: banks the pending qi at its time and adds the bonus', () => {
    const c = newCultivator('x', 0)
    expect(completeCircuit(c, CIRCUIT_MS)).toBe(60 + CIRCUIT_BONUS_SECONDS)
    expect(c).toMatchObject({ qi: 70, circuits: 1, lastCollectAt: CIRCUIT_MS })
    // A circuit due before the last collect banks nothing more and never moves the collect time back.
    collect(c, 2 * CIRCUIT_MS)
    expect(completeCircuit(c, 1.5 * CIRCUIT_MS)).toBe(CIRCUIT_BONUS_SECONDS)
    expect(c.lastCollectAt).toBe(2 * CIRCUIT_MS)
  })

  it('cleans display names', () => {
    expect(cleanName(' a ')).toBe('a')
    expect(cleanName('')).toBeUndefined()
    expect(cleanName('x'.repeat(25))).toBeUndefined()
    expect(cleanName('a\nb')).toBeUndefined()
    expect(cleanName(5)).toBeUndefined()
  })
})
