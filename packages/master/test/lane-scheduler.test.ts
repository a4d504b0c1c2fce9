import { describe, expect, it } from 'vitest'
import type { Task } from '@peony/protocol'
import { LaneScheduler, Queue, type Entry as LaneEntry } from '../src/lanes/lane-scheduler.ts'

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

  it('keeps an idle lane for reuse, or deletes it at once when told to keep none', () => {
    const keep = new LaneScheduler(1)
    keep.push(1, t(1, 0), RAW)
    const [a] = drain(keep)
    const lane = a!.lane
    keep.settle(a!)
    expect(keep.lanes.size).toBe(1)
    expect(keep.activeLanes).toBe(0)
    keep.push(1, t(1, 1), RAW)
    expect(keep.lanes.get(1)).toBe(lane)
    expect(keep.activeLanes).toBe(1)
    expect(drain(keep).map((e) => e.task.custom)).toEqual([1])

    const none = new LaneScheduler(1, 0)
    none.push(1, t(1, 0), RAW)
    const [e] = drain(none)
    expect(none.lanes.size).toBe(1)
    none.settle(e!)
    expect(none.lanes.size).toBe(0)
  })

  it('keeps at most keepIdle idle lanes, deleting the one idle longest', () => {
    const s = new LaneScheduler(4, 3)
    const run = (uid: number, n: number): void => {
      s.push(uid, t(uid, n), RAW)
      for (const e of drain(s)) s.settle(e)
    }
    run(1, 0)
    run(2, 0)
    run(3, 0)
    run(1, 1) // lane 1 reused: now the most recently idle
    expect([...s.lanes.keys()].sort()).toEqual([1, 2, 3])
    run(4, 0) // a fourth idle lane: 2, idle longest, goes (1's older entry is stale)
    expect([...s.lanes.keys()].sort()).toEqual([1, 3, 4])
    run(5, 0)
    run(6, 0)
    expect([...s.lanes.keys()].sort()).toEqual([4, 5, 6])
    // A lane still running a task is never deleted, however many go idle meanwhile.
    s.push(7, t(7, 0), RAW)
    const [busy] = drain(s)
    for (let uid = 10; uid < 20; uid++) run(uid, 0)
    expect(s.lanes.get(7)).toBe(busy!.lane)
    expect(s.lanes.size).toBe(4)
    s.settle(busy!)
    s.push(7, t(7, 1), RAW)
    expect(drain(s).map((e) => e.task.custom)).toEqual([1])
  })

  it('an idle lane gives back the queue a burst grew, and grows it again for the next burst, in order', () => {
    const s = new LaneScheduler(1)
    for (let i = 0; i < 1000; i++) s.push(1, t(1, i), RAW)
    const lane = s.lanes.get(1)!
    expect(lane.items.capacity).toBeGreaterThanOrEqual(1000)
    for (let i = 0; i < 1000; i++) s.settle(drain(s, 1)[0]!)
    expect(s.lanes.get(1)).toBe(lane)
    expect(lane.items.capacity).toBeLessThanOrEqual(16)
    for (let i = 0; i < 100; i++) s.push(1, t(1, i), RAW)
    const out: number[] = []
    for (let i = 0; i < 100; i++) {
      const [e] = drain(s, 1)
      out.push(e!.task.custom as number)
      s.settle(e!)
    }
    expect(out).toEqual(Array.from({ length: 100 }, (_, i) => i))
  })

  it('its queue is a ring that grows past its capacity and keeps order across unshiftAll', () => {
    const q = new Queue<number>(2)
    for (let i = 0; i < 3; i++) q.push(i)
    expect(q.shift()).toBe(0)
    for (let i = 3; i < 10; i++) q.push(i)
    q.unshiftAll([-2, -1])
    const out: number[] = []
    let v: number | undefined
    while ((v = q.shift()) !== undefined) out.push(v)
    expect(out).toEqual([-2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(q.size).toBe(0)
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
