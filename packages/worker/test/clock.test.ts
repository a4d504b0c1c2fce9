import { describe, expect, test } from 'vitest'
import { WorkerErrorCode, createApp } from '@peony/worker'
import { ManualClock, systemClock } from '@peony/worker/host'
import { createTestHarness } from '@peony/worker/testing'

describe('ManualClock', () => {
  test('advance runs due timers in due order (ties in set order), each at its due time', () => {
    const c = new ManualClock(100)
    const ran: string[] = []
    c.setTimeout(() => ran.push(`b@${c.now()}`), 20)
    c.setTimeout(() => ran.push(`a@${c.now()}`), 10)
    c.setTimeout(() => ran.push(`a2@${c.now()}`), 10)
    const late = c.setTimeout(() => ran.push('never'), 30)
    c.clearTimeout(late)
    expect(c.advance(9)).toBe(0)
    expect(c.advance(11)).toBe(3)
    expect(ran).toEqual(['a@110', 'a2@110', 'b@120'])
    expect(c.now()).toBe(120)
    expect(c.pending).toBe(0)
  })

  test('timers set by callbacks inside the window run too; negative delays count as 0', () => {
    const c = new ManualClock()
    const ran: number[] = []
    c.setTimeout(() => {
      ran.push(c.now())
      c.setTimeout(() => ran.push(c.now()), 5)
      c.setTimeout(() => ran.push(c.now()), 50)
    }, 5)
    c.setTimeout(() => ran.push(-1), -10)
    c.advance(10)
    expect(ran).toEqual([-1, 5, 10])
    expect(c.pending).toBe(1)
    expect(c.runAll()).toBe(1)
    expect(ran).toEqual([-1, 5, 10, 55])
    expect(() => c.advance(-1)).toThrow(RangeError)
  })

  test('runAll refuses to spin forever', () => {
    const c = new ManualClock()
    const again = (): void => void c.setTimeout(again, 1)
    again()
    expect(() => c.runAll(100)).toThrow(RangeError)
  })

  test('advanceAsync lets async code between timers run', async () => {
    const c = new ManualClock()
    const seen: number[] = []
    void (async () => {
      for (let i = 0; i < 3; i++) {
        await c.sleep(10)
        seen.push(c.now())
      }
    })()
    // sync advance: only the first timer ran; its continuation had no chance to set the next one
    expect(c.advance(30)).toBe(1)
    expect(seen).toEqual([])
    expect(c.pending).toBe(0)
    // async advance: the continuation runs (at 30), and each later timer fires in the window
    expect(await c.advanceAsync(30)).toBe(2)
    expect(seen).toEqual([30, 40, 50])
  })

  test('systemClock is wall time', async () => {
    const before = Date.now()
    expect(systemClock.now()).toBeGreaterThanOrEqual(before)
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 1))
    const h = systemClock.setTimeout(() => {
      throw new Error('cleared timers never run')
    }, 1)
    systemClock.clearTimeout(h)
    await new Promise((r) => setTimeout(r, 5))
  })
})

describe('worker.timers', () => {
  test('every keeps its phase; a throwing callback stays scheduled and is reported (B4)', async () => {
    const ticks: number[] = []
    const errors: string[] = []
    const app = createApp()
      .addHook('onWorkerStart', (w) => {
        w.timers.every(10, () => {
          ticks.push(w.clock.now())
          if (ticks.length === 2) throw new Error('tick failed')
        })
        w.timers.every(25, async () => {
          await null
          throw new Error('async tick failed')
        })
      })
      .addHook('onError', (err, req) => void errors.push(`${err.code} ${String(req)}`))
    const h = createTestHarness(app)
    await h.ready
    await h.advance(40)
    expect(ticks).toEqual([10, 20, 30, 40])
    expect(errors).toEqual([`${WorkerErrorCode.TIMER_FAILED} undefined`, `${WorkerErrorCode.TIMER_FAILED} undefined`])
    expect(h.worker.timers.size).toBe(2)
    await h.stop()
    expect(h.worker.timers.size).toBe(0)
    expect(() => h.worker.timers.once(1, () => {})).toThrow(expect.objectContaining({ code: WorkerErrorCode.WORKER_STOPPED }))
  })

  test('once runs once; cancel stops a timer', async () => {
    const h = createTestHarness(createApp())
    await h.ready
    const ran: string[] = []
    const once = h.worker.timers.once(5, () => void ran.push('once'))
    const ev = h.worker.timers.every(5, () => void ran.push('every'))
    await h.advance(5)
    expect(once.active).toBe(false)
    ev.cancel()
    ev.cancel()
    expect(ev.active).toBe(false)
    await h.advance(50)
    expect(ran).toEqual(['once', 'every'])
    expect(() => h.worker.timers.every(0, () => {})).toThrow(RangeError)
    expect(() => h.worker.timers.once(-1, () => {})).toThrow(RangeError)
    await h.stop()
  })

  test('everyTick runs once after each turn with work and never while idle (no busy-spin, S4)', async () => {
    const app = createApp().route('x', (req) => req.reply(1))
    const h = createTestHarness(app)
    await h.ready
    let ticks = 0
    const t = h.worker.timers.everyTick(() => {
      ticks++
      if (ticks === 1) throw new Error('tick failed')
    })
    await new Promise((r) => setTimeout(r, 20))
    expect(ticks).toBe(0) // idle: nothing runs
    await Promise.all([h.inject({ cmd: 'x', uid: 1 }), h.inject({ cmd: 'x', uid: 2 }), h.inject({ cmd: 'x', uid: 3 })])
    await new Promise((r) => setImmediate(r))
    expect(ticks).toBe(1) // one turn of work, one tick; its throw is reported and it stays
    await h.inject({ cmd: 'x', uid: 1 })
    await new Promise((r) => setImmediate(r))
    expect(ticks).toBe(2)
    await new Promise((r) => setTimeout(r, 20))
    expect(ticks).toBe(2)
    expect(h.logs.some((e) => (e.obj as { code?: string }).code === WorkerErrorCode.TIMER_FAILED)).toBe(true)
    t.cancel()
    await h.inject({ cmd: 'x', uid: 1 })
    await new Promise((r) => setImmediate(r))
    expect(ticks).toBe(2)
    await h.stop()
  })
})
