/** LogLimiter: one line per kind per window, a counted summary when the window ends, nothing lost in the counts. */
import { describe, expect, it } from 'vitest'
import { LogLimiter, SUPPRESSED_MSG, type LogLimiterClock } from '../src/index.ts'

/** A clock whose time moves only when told to (timers run in due order). */
function manualClock(): LogLimiterClock & { advance(ms: number): void; pending(): number } {
  let now = 0
  let timers: { due: number; fn: () => void; id: number }[] = []
  let next = 1
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const t = { due: now + ms, fn, id: next++ }
      timers.push(t)
      return t.id
    },
    clearTimeout(id) {
      timers = timers.filter((t) => t.id !== id)
    },
    advance(ms) {
      const end = now + ms
      for (;;) {
        timers.sort((a, b) => a.due - b.due || a.id - b.id)
        const t = timers[0]
        if (t === undefined || t.due > end) break
        timers.shift()
        now = t.due
        t.fn()
      }
      now = end
    },
    pending: () => timers.length,
  }
}

type Entry = { level: 'warn' | 'error'; obj: Record<string, unknown>; msg: string | undefined; at: number }

function setup(intervalMs = 10_000) {
  const clock = manualClock()
  const lines: Entry[] = []
  const target = {
    warn: (obj: object, msg?: string) => lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg, at: clock.now() }),
    error: (obj: object, msg?: string) => lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg, at: clock.now() }),
  }
  return { clock, lines, limiter: new LogLimiter(target, { clock, intervalMs }) }
}

describe('LogLimiter', () => {
  it('prints the first line of a kind, counts the rest of the window, and summarizes them when it ends', () => {
    const { clock, lines, limiter } = setup()
    for (let i = 0; i < 500; i++) {
      limiter.error('load', { code: 'PEONY_SESSION_LOAD_FAILED', uid: i }, `load ${i} failed`)
      clock.advance(10)
    }
    // 0 … 4,990 ms: one line, 499 counted
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 'error', obj: { code: 'PEONY_SESSION_LOAD_FAILED', uid: 0 }, msg: 'load 0 failed' })
    expect(lines[0]!.obj.suppressed).toBeUndefined()
    clock.advance(10_000)
    expect(lines).toHaveLength(2)
    expect(lines[1]).toMatchObject({
      level: 'error',
      at: 10_000,
      msg: SUPPRESSED_MSG,
      obj: { code: 'PEONY_SESSION_LOAD_FAILED', kind: 'load', suppressed: 499, windowMs: 10_000, last: 'load 499 failed' },
    })
    // the summary is the line of the window it opens (10 … 20 s); after it, quiet: the next line prints at once, with nothing to carry
    limiter.error('load', { code: 'PEONY_SESSION_LOAD_FAILED' }, 'held')
    expect(lines).toHaveLength(2)
    clock.advance(5_000)
    expect(lines).toHaveLength(3)
    expect(lines[2]).toMatchObject({ at: 20_000, obj: { suppressed: 1, last: 'held' } })
    clock.advance(10_000)
    limiter.error('load', { code: 'PEONY_SESSION_LOAD_FAILED' }, 'again')
    expect(lines).toHaveLength(4)
    expect(lines[3]!.obj.suppressed).toBeUndefined()
  })

  it('a fault that lasts: one line per kind per window (the summary opens the next one), and the counts add up', () => {
    const { clock, lines, limiter } = setup()
    let events = 0
    for (let t = 0; t < 60_000; t += 7) {
      limiter.warn('flush', { code: 'PEONY_SESSION_FLUSH_FAILED' }, 'write failed')
      events++
      clock.advance(7)
    }
    limiter.flush()
    for (let i = 1; i < lines.length; i++) expect(lines[i]!.at - lines[i - 1]!.at).toBeGreaterThanOrEqual(10_000)
    expect(lines.length).toBeLessThanOrEqual(7)
    expect(lines.every((l) => l.obj.code === 'PEONY_SESSION_FLUSH_FAILED')).toBe(true)
    expect(lines.reduce((n, l) => n + (l.msg === SUPPRESSED_MSG ? (l.obj.suppressed as number) : 1 + ((l.obj.suppressed as number | undefined) ?? 0)), 0)).toBe(
      events,
    )
  })

  it('kinds are independent; levels are kept', () => {
    const { clock, lines, limiter } = setup()
    limiter.error('a', { code: 'PEONY_A' }, 'a')
    limiter.warn('b', { code: 'PEONY_B' }, 'b')
    limiter.error('a', { code: 'PEONY_A' }, 'a2')
    limiter.warn('b', { code: 'PEONY_B' }, 'b2')
    limiter.warn('b', { code: 'PEONY_B' }, 'b3')
    expect(lines.map((l) => l.msg)).toEqual(['a', 'b'])
    clock.advance(10_000)
    expect(lines.slice(2).map((l) => [l.level, l.obj.kind, l.obj.suppressed, l.obj.last])).toEqual([
      ['error', 'a', 1, 'a2'],
      ['warn', 'b', 2, 'b3'],
    ])
  })

  it('a count the summary did not carry rides on the next printed line of the kind', () => {
    const lines: Entry[] = []
    let now = 0
    // A clock whose timers never fire: the count must still reach the log.
    const limiter = new LogLimiter(
      { warn: (obj, msg) => lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg, at: now }), error: () => {} },
      { clock: { now: () => now, setTimeout: () => 1, clearTimeout: () => {} } },
    )
    limiter.warn('k', { code: 'PEONY_K' }, 'one')
    limiter.warn('k', { code: 'PEONY_K' }, 'two')
    limiter.warn('k', { code: 'PEONY_K' }, 'three')
    now = 10_000
    limiter.warn('k', { code: 'PEONY_K' }, 'four')
    expect(lines.map((l) => [l.msg, l.obj.suppressed])).toEqual([
      ['one', undefined],
      ['four', 2],
    ])
  })

  it('flush() prints what is counted and cancels the timers; intervalMs 0 prints every line', () => {
    const { clock, lines, limiter } = setup()
    limiter.error('k', { code: 'PEONY_K' }, 'x')
    limiter.error('k', { code: 'PEONY_K' }, 'y')
    expect(clock.pending()).toBe(1)
    limiter.flush()
    expect(clock.pending()).toBe(0)
    expect(lines.map((l) => l.obj.suppressed)).toEqual([undefined, 1])
    const every = setup(0)
    for (let i = 0; i < 5; i++) every.limiter.warn('k', {}, 'z')
    expect(every.lines).toHaveLength(5)
  })

  it('remembers at most maxKinds kinds', () => {
    const lines: unknown[] = []
    // Time stands still, so nothing forgets a kind but the bound.
    const clock = { now: () => 0, setTimeout: () => 1, clearTimeout: () => {} }
    const limiter = new LogLimiter({ warn: (o) => lines.push(o), error: () => {} }, { maxKinds: 10, clock })
    for (let i = 0; i < 1000; i++) limiter.warn(`k${i}`, {}, 'm')
    expect(lines).toHaveLength(1000)
    // k0's window was forgotten to stay within the bound: it prints again (without the bound it
    // would still be in its window and be held back).
    limiter.warn('k0', {}, 'm')
    expect(lines).toHaveLength(1001)
    expect(() => new LogLimiter({ warn() {}, error() {} }, { intervalMs: -1 })).toThrow(RangeError)
  })
})
