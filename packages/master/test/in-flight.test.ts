import { describe, expect, it } from 'vitest'
import { InFlight } from '../src/lanes/in-flight.ts'
import { Lane, type Entry } from '../src/lanes/lane-scheduler.ts'

const lane = new Lane(1)
const entry = (): Entry => ({ task: { cmd: 10, uid: 1 }, raw: new Uint8Array(0), lane, id: 0, seq: 0, at: 0 })

describe('InFlight', () => {
  it('hands out increasing ids, finds and removes entries by id', () => {
    const t = new InFlight(7)
    const es = [entry(), entry(), entry()]
    expect(es.map((e) => t.add(e))).toEqual([1, 2, 3])
    expect(t.size).toBe(3)
    expect(t.get(2)).toBe(es[1])
    expect(t.get(10)).toBeUndefined() // same index as 2, another id
    expect(t.take(10)).toBeUndefined()
    expect(t.take(2)).toBe(es[1])
    expect(t.take(2)).toBeUndefined()
    expect(t.size).toBe(2)
  })

  it('never gives two tasks in flight the same index: a long-held id is skipped over', () => {
    const t = new InFlight(7)
    const slow = entry()
    t.add(slow) // id 1, index 1
    const ids: number[] = []
    for (let i = 0; i < 40; i++) {
      const e = entry()
      ids.push(t.add(e))
      expect(t.take(e.id)).toBe(e)
    }
    expect(ids.some((id) => (id & 7) === 1)).toBe(false)
    expect(t.get(1)).toBe(slow)
    expect(t.inOrder()).toEqual([slow])
  })

  it('lists entries in dispatch order, across the wrap of the id space', () => {
    const t = new InFlight(7)
    ;(t as unknown as { lastId: number }).lastId = 0x7ffffffe
    const es = [entry(), entry(), entry(), entry()]
    for (const e of es) t.add(e)
    expect(es.map((e) => e.id)).toEqual([0x7fffffff, 1, 2, 3])
    expect(t.inOrder()).toEqual(es)
    t.clear()
    expect(t.size).toBe(0)
    expect(t.inOrder()).toEqual([])
  })

  it('refuses more entries than it has indexes', () => {
    const t = new InFlight(3)
    for (let i = 0; i < 4; i++) t.add(entry())
    expect(() => t.add(entry())).toThrow(RangeError)
  })
})
