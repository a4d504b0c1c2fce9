/**
 * The idle-rpg example app, through @peony/worker's test harness (a real WorkerRuntime on a
 * ManualClock, no sockets), plus its pure game rules.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { createTestHarness } from '@peony/worker/testing'
import app from '../examples/idle-rpg/app.ts'
import { breakthrough, cleanName, collect, GameRet, newCultivator, OFFLINE_CAP_MS, pendingQi, REALMS } from '../examples/idle-rpg/game.ts'

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

  it('cleans display names', () => {
    expect(cleanName(' a ')).toBe('a')
    expect(cleanName('')).toBeUndefined()
    expect(cleanName('x'.repeat(25))).toBeUndefined()
    expect(cleanName('a\nb')).toBeUndefined()
    expect(cleanName(5)).toBeUndefined()
  })
})
