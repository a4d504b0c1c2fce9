// game/app.test.ts
import { expect, it } from 'vitest'
import { createTestHarness } from '@peony/worker/testing'
import app, { player } from './app.ts'

it('logs in, refuses the anonymous, sells, pushes, times out, earns while offline', async () => {
  const h = createTestHarness(app) // sessions in a MemoryStorage: h.storage
  await h.ready // onWorkerStart ran

  const login = await h.inject({ cmd: 'login', data: { uid: 7 } }) // task cmd 10, nodeId 1, connId 1
  expect(login.replies).toEqual([{ cmd: 'login', sn: 1, ret: 0, data: { uid: 7 } }])
  expect(login.egress[0]).toMatchObject({ cmd: 260, uid: 7 })

  const anon = await h.inject({ cmd: 'shop.buy', data: { item: 'sword', price: 10 } })
  expect(anon.outcome).toBe('interrupted')
  expect(anon.replies[0]).toMatchObject({ ret: 1 })

  const buying = h.inject({ cmd: 'shop.buy', uid: 7, data: { item: 'sword', price: 10 } })
  await h.advance(5) // the handler sleeps 5 ms on the manual clock
  const buy = await buying
  expect(buy.replies).toEqual([{ cmd: 'shop.buy', sn: 3, ret: 0, data: { gold: 90 } }])
  expect(buy.pushes).toEqual([{ cmd: 'inventory.added', data: { item: 'sword' } }])

  const slow = h.inject({ cmd: 'shop.slow', uid: 7 })
  await h.advance(1_000) // the route's deadline: -10001 now
  await h.advance(60_000) // the handler settles; its late reply is ignored
  expect(await slow).toMatchObject({ outcome: 'timed-out', replies: [{ cmd: 'shop.slow', ret: -10001 }] })

  expect((await h.inject({ cmd: 'no.such', uid: 7 })).replies[0]?.ret).toBe(-10000)
  expect(player.resident(h.worker, 7)?.state).toEqual({ gold: 91, items: ['sword'] }) // one income tick

  expect((await h.inject({ taskCmd: 20, uid: 7 })).outcome).toBe('ok') // onClientClosed
  await h.stop() // waits for every task, runs onWorkerStop, writes the sessions
  expect(h.stats().sessions?.dirty).toBe(0) // written during the minute above, and at stop

  // Another worker loads player 7 ten minutes later: the income timer catches up on load.
  const { ManualClock } = await import('@peony/worker/testing')
  const later = createTestHarness(app, { sessions: { storage: h.storage }, clock: new ManualClock(h.clock.now() + 600_000) })
  const buy2 = later.inject({ cmd: 'shop.buy', uid: 7, data: { item: 'bread', price: 1 } })
  await later.advance(5)
  expect((await buy2).replies[0]?.data).toEqual({ gold: 100 }) // 91 + 10 missed ticks − 1
  expect(player.resident(later.worker, 7)?.state.items).toEqual(['sword', 'bread'])
  await later.stop()
})
