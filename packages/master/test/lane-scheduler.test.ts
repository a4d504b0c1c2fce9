import { describe, expect, it } from 'vitest'
import type { Task } from '@peony/broker-client'
import { LaneScheduler, type Entry as LaneEntry } from '../src/lanes/lane-scheduler.ts'

const t = (uid: number, n: number): Task => ({ cmd: 10, uid, custom: n })
const RAW = new Uint8Array(0)

function drain(s: LaneScheduler, max = Infinity): LaneEntry[] {
  const out: LaneEntry[] = []
  let e: LaneEntry | undefined
  while (out.length < max && (e = s.next()) !== undefined) out.push(e)
  return out
}

describe('LaneScheduler', () => {
  it('dispatches at most K tasks of one key at a time, in order', () => {
    const s = new LaneScheduler(2)
    for (let i = 0; i < 5; i++) s.push(1, t(1, i), RAW)
    const first = drain(s)
    expect(first.map((e) => e.task.custom)).toEqual([0, 1])
    expect(s.queued).toBe(3)
    expect(s.inFlight).toBe(2)
    s.settle(first[0]!)
    expect(drain(s).map((e) => e.task.custom)).toEqual([2])
  })

  it('serves ready lanes in turn so one busy key cannot starve the others', () => {
    const s = new LaneScheduler(100)
    for (let i = 0; i < 50; i++) s.push(1, t(1, i), RAW)
    s.push(2, t(2, 0), RAW)
    const order = drain(s, 3).map((e) => e.task.uid)
    expect(order).toEqual([1, 2, 1])
  })

  it('requeues unstarted tasks at the head of their lanes in order', () => {
    const s = new LaneScheduler(4)
    for (let i = 0; i < 6; i++) s.push(1, t(1, i), RAW)
    const sent = drain(s)
    expect(sent.map((e) => e.task.custom)).toEqual([0, 1, 2, 3])
    // task 0 was lost (started), 1..3 never started
    s.forgetInFlight(sent[0]!)
    s.requeue(sent.slice(1))
    expect(s.queued).toBe(5)
    expect(s.inFlight).toBe(0)
    expect(drain(s).map((e) => e.task.custom)).toEqual([1, 2, 3, 4])
  })

  it('deletes a lane once it is empty and idle', () => {
    const s = new LaneScheduler(1)
    s.push(1, t(1, 0), RAW)
    const [e] = drain(s)
    expect(s.lanes.size).toBe(1)
    s.settle(e!)
    expect(s.lanes.size).toBe(0)
  })

  it('drainQueued returns every undispatched task and keeps in-flight lanes', () => {
    const s = new LaneScheduler(1)
    s.push(1, t(1, 0), RAW)
    s.push(1, t(1, 1), RAW)
    s.push(2, t(2, 0), RAW)
    drain(s)
    const left = s.drainQueued()
    expect(left.map((e) => [e.task.uid, e.task.custom])).toEqual([[1, 1]])
    expect(s.queued).toBe(0)
    expect(s.lanes.size).toBe(2)
  })
})
