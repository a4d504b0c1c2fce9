/**
 * Checks the checker: decodes pre-encoded frames and feeds trackers as handlers would, then
 * verifies that `verify` accepts a correct run and rejects a lost, a duplicated, a reordered and
 * a split-uid run. Exits 1 on any surprise.
 *
 *   node tools/bench/lib/self-check.mjs
 */
import assert from 'node:assert/strict'
import { Unpackr } from 'msgpackr'
import { encodeFrames, expectedPerUid, stampFrame, readStamp, nowMs } from './tasks.mjs'
import { createTracker, verify } from './order.mjs'

const N = 5000
const unpackr = new Unpackr({ useRecords: false })
const expected = expectedPerUid(N)

/** Decodes every task of the frames, in order. */
function decode(frames) {
  const out = []
  for (const f of frames) {
    const v = unpackr.unpack(f)
    for (const t of Array.isArray(v) ? v : [v]) out.push({ uid: t.uid, sn: unpackr.unpack(t.body).sn, task: t })
  }
  return out
}

/** Runs tasks through two trackers routed by uid % 2 and returns the reports. */
function handle(tasks) {
  const trackers = [createTracker(), createTracker()]
  for (const { uid, sn } of tasks) trackers[uid % 2].see(uid, sn)
  return trackers.map((t, i) => ({ ...t.report(), id: `t${i}` }))
}

for (const batch of [1, 64]) {
  const tasks = decode(encodeFrames(N, batch).frames)
  assert.equal(tasks.length, N)
  assert.equal(tasks[0].task.cmd, 10)
  assert.equal(tasks[0].task.node_id, 1)
  assert.equal(tasks[0].task.conn_id, tasks[0].uid)
  assert.ok(verify(handle(tasks), expected).ok, `batch ${batch}: a correct run must pass`)

  const lost = tasks.filter((_, i) => i !== 1234)
  assert.equal(verify(handle(lost), expected).ok, false, 'a lost task must fail')
  const dup = [...tasks.slice(0, 100), tasks[50], ...tasks.slice(100)]
  assert.equal(verify(handle(dup), expected).ok, false, 'a duplicated task must fail')
  const uid = tasks[10].uid
  const j = tasks.findIndex((t, i) => i > 10 && t.uid === uid)
  const swapped = [...tasks]
  ;[swapped[10], swapped[j]] = [swapped[j], swapped[10]]
  assert.equal(verify(handle(swapped), expected).ok, false, 'two tasks of a uid swapped must fail')
  const reports = handle(tasks)
  const moved = reports[0].uids.pop()
  reports[1].uids.push(moved)
  reports[1].uids.push(moved)
  assert.equal(verify(reports, expected).ok, false, 'a uid seen by two threads must fail')
}

const { frames, offsets } = encodeFrames(128, 64, { stamp: true })
const t = nowMs()
stampFrame(frames[1], offsets[1], t)
const task = unpackr.unpack(frames[1])[63]
assert.equal(readStamp(unpackr.unpack(task.body).data), t)
assert.equal(Number(task.ts), Math.floor(t))
console.log('self-check ok')
