/** Examples of testing handlers with @peony/worker/testing: no sockets, no sleeps. */
import { describe, expect, test } from 'vitest'
import { Blueprint, createApp } from '@peony/worker'
import { createTestHarness } from '@peony/worker/testing'

/** A small game module, as an app developer would write it. */
function gameApp() {
  const bag = new Blueprint('bag')
    .route('bag.add', (req) => {
      const players = req.worker.locals as Record<string, { items: string[] }>
      const p = (players[String(req.uid)] ??= { items: [] })
      p.items.push(String((req.data as { item: string }).item))
      req.reply({ count: p.items.length })
      req.push('bag.changed', p.items)
    })
    .route('bag.slowCount', async (req) => {
      await req.worker.sleep(1_000)
      req.reply({ ok: true })
    })
  return createApp()
    .route('login', (req) => {
      const uid = (req.data as { uid: number }).uid
      req.loginClient(uid)
      req.reply({ uid })
    })
    .addHook('onClientClosed', (req) => {
      delete (req.worker.locals as Record<string, unknown>)[String(req.uid)]
    })
    .register(bag)
}

describe('test harness', () => {
  test('inject a shorthand request and read the replies and pushes it produced', async () => {
    const h = createTestHarness(gameApp())
    const r = await h.inject({ cmd: 'bag.add', data: { item: 'sword' }, uid: 7 })
    expect(r.outcome).toBe('ok')
    expect(r.replies).toEqual([{ cmd: 'bag.add', sn: 1, ret: 0, data: { count: 1 } }])
    expect(r.pushes).toEqual([{ cmd: 'bag.changed', data: ['sword'] }])
    const r2 = await h.inject({ cmd: 'bag.add', data: { item: 'shield' }, uid: 7, sn: 99 })
    expect(r2.replies).toEqual([{ cmd: 'bag.add', sn: 99, ret: 0, data: { count: 2 } }])
    await h.stop()
  })

  test('inject a raw Task (any input with a body key)', async () => {
    const h = createTestHarness(gameApp())
    const r = await h.inject({ cmd: 20, uid: 7, nodeId: 1, connId: 1, body: undefined })
    expect(r.outcome).toBe('ok')
    const bad = await h.inject({ cmd: 10, nodeId: 1, connId: 1, body: new Uint8Array([0xff]) })
    expect(bad.outcome).toBe('bad-body')
    expect(bad.replies).toEqual([{ ret: -10004 }])
    await h.stop()
  })

  test('egress commands other than replies are in result.egress', async () => {
    const h = createTestHarness(gameApp())
    const r = await h.inject({ cmd: 'login', data: { uid: 42 }, nodeId: 3, connId: 11 })
    expect(r.egress[0]).toEqual({ cmd: 260, nodeId: 3, connId: 11, uid: 42, userdata: undefined })
    expect(r.replies[0]?.data).toEqual({ uid: 42 })
    await h.stop()
  })

  test('time moves only when the test advances it', async () => {
    const h = createTestHarness(gameApp(), { workTimeoutMs: 500 })
    const pending = h.inject({ cmd: 'bag.slowCount', uid: 7 })
    await h.advance(500)
    await h.advance(500)
    const r = await pending
    expect(r.outcome).toBe('timed-out')
    expect(r.replies).toEqual([{ cmd: 'bag.slowCount', sn: 1, ret: -10001 }])
    expect(h.stats().timedOut).toBe(1)
    await h.stop()
  })

  test('unknown cmds are answered -10000; a shorthand for task cmd 10 needs a cmd', async () => {
    const h = createTestHarness(gameApp())
    expect((await h.inject({ cmd: 'nope', sn: 5 })).replies).toEqual([{ cmd: 'nope', sn: 5, ret: -10000 }])
    await expect(h.inject({ data: 1 })).rejects.toThrow(TypeError)
    await h.stop()
  })

  test('worker info can be set', async () => {
    const h = createTestHarness(createApp(), { info: { slot: 3, serverId: 'eu-1' } })
    expect(h.worker.slot).toBe(3)
    expect(h.worker.serverId).toBe('eu-1')
    expect(h.worker.groupId).toBe(1)
    await h.stop()
  })
})
