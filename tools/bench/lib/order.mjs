/**
 * The per-uid order checker. Every handler of every benchmark (baselines and Peony) feeds one
 * tracker per thread with `see(uid, sn)`; the tracker counts tasks per uid, counts every task
 * whose `sn` is not the previous one + 1 (a gap, a duplicate or a reordering), and keeps the
 * handler time of the first and the last task. `verify` then proves, across the reports of all
 * threads, that every task was handled exactly once and in per-uid order:
 *   for every uid: exactly one thread saw it, count = expected, last sn = expected, no violation.
 * (sn starts at 1 and every step is +1, so count = last = expected leaves no room for a duplicate
 * or a loss.)
 *
 * A tracker can also report progress (its cumulative count, every `feedbackEvery` tasks) as a UDP
 * datagram to the sender, which uses it to keep a bounded window of tasks in flight, and record
 * latency samples (send stamp → handler time).
 */
import dgram from 'node:dgram'
import { threadId } from 'node:worker_threads'
import { readStamp, nowMs } from './tasks.mjs'

/**
 * @typedef {object} TrackerReport
 * @property {string} id          tracker id (pid/threadId)
 * @property {number} tasks       tasks seen
 * @property {number} violations  tasks whose sn was not last + 1
 * @property {Array<[uid: number|string, sn: number, expected: number]>} firstViolations  up to 10
 * @property {Array<[uid: number|string, count: number, lastSn: number]>} uids
 * @property {number} firstAt     handler time of the first task (ms since the epoch)
 * @property {number} lastAt      handler time of the last task
 * @property {string} [latencyFile] binary file of [sendStamp, latencyMs] float64 pairs
 */

/**
 * Creates a tracker for the current thread.
 * @param {{feedbackPort?: number, feedbackEvery?: number, latency?: boolean}} [opts]
 */
export function createTracker(opts = {}) {
  const feedbackPort = opts.feedbackPort ?? 0
  const every = opts.feedbackEvery ?? 1024
  const id = `${process.pid}/${threadId}`
  /** @type {Map<number|string, {n: number, last: number}>} */
  const perUid = new Map()
  let tasks = 0
  let violations = 0
  const firstViolations = []
  let firstAt = 0
  let lastAt = 0
  let sock = null
  if (feedbackPort > 0) {
    sock = dgram.createSocket('udp4')
    sock.unref()
  }
  let lat = opts.latency ? new Float64Array(1 << 16) : null
  let latN = 0

  function feedback() {
    sock.send(`${id} ${tasks}`, feedbackPort, '127.0.0.1')
  }

  return {
    id,
    /**
     * Records one handled task.
     * @param {number|string} uid
     * @param {number} sn
     */
    see(uid, sn) {
      const t = nowMs()
      if (tasks === 0) firstAt = t
      lastAt = t
      tasks++
      let e = perUid.get(uid)
      if (e === undefined) {
        e = { n: 0, last: 0 }
        perUid.set(uid, e)
      }
      e.n++
      if (sn !== e.last + 1) {
        violations++
        if (firstViolations.length < 10) firstViolations.push([uid, sn, e.last + 1])
      }
      e.last = sn
      if (sock !== null && tasks % every === 0) feedback()
      return t
    },
    /**
     * Records the latency of a task whose `data` carries a send stamp (call right after `see`).
     * @param {Uint8Array} data
     * @param {number} handledAt what `see` returned
     */
    latency(data, handledAt) {
      if (lat === null) return
      if (2 * latN + 2 > lat.length) {
        const next = new Float64Array(lat.length * 2)
        next.set(lat)
        lat = next
      }
      const sent = readStamp(data)
      lat[2 * latN] = sent
      lat[2 * latN + 1] = handledAt - sent
      latN++
    },
    /** Sends the final count to the sender now. */
    flush() {
      if (sock !== null) feedback()
    },
    /**
     * The report of this thread.
     * @param {{latencyFile?: string, writeFile?: (path: string, data: Uint8Array) => void} & Record<string, unknown>} [extra]
     * @returns {TrackerReport}
     */
    report(extra = {}) {
      const { writeFile, latencyFile, ...rest } = extra
      const out = {
        id,
        tasks,
        violations,
        firstViolations,
        uids: [...perUid].map(([u, e]) => [u, e.n, e.last]),
        firstAt,
        lastAt,
        ...rest,
      }
      if (lat !== null && latencyFile && writeFile) {
        writeFile(latencyFile, new Uint8Array(lat.buffer, 0, latN * 16))
        out.latencyFile = latencyFile
        out.latencySamples = latN
      }
      return out
    },
  }
}

/**
 * Checks the reports of one run against the expected per-uid counts.
 * @param {TrackerReport[]} reports
 * @param {Map<number, number>} expected uid → count (= last sn)
 * @returns {{ok: boolean, handled: number, expected: number, threads: number, errors: string[], firstAt: number, lastAt: number}}
 */
export function verify(reports, expected) {
  const errors = []
  const err = (m) => {
    if (errors.length < 20) errors.push(m)
  }
  const owner = new Map()
  let handled = 0
  let total = 0
  let firstAt = Infinity
  let lastAt = 0
  for (const n of expected.values()) total += n
  for (const r of reports) {
    handled += r.tasks
    if (r.tasks > 0) {
      firstAt = Math.min(firstAt, r.firstAt)
      lastAt = Math.max(lastAt, r.lastAt)
    }
    if (r.violations > 0) err(`${r.id}: ${r.violations} tasks out of per-uid order (first: ${JSON.stringify(r.firstViolations)})`)
    for (const [uid, n, last] of r.uids) {
      const prev = owner.get(uid)
      if (prev !== undefined) err(`uid ${uid} handled by two threads (${prev} and ${r.id})`)
      owner.set(uid, r.id)
      const want = expected.get(uid)
      if (want === undefined) err(`uid ${uid} was never sent`)
      else if (n !== want || last !== want) err(`uid ${uid}: ${n} handled, last sn ${last}, expected ${want}`)
    }
  }
  for (const uid of expected.keys()) if (!owner.has(uid)) err(`uid ${uid}: none of its ${expected.get(uid)} tasks handled`)
  if (handled !== total) err(`${handled} tasks handled, ${total} sent`)
  return { ok: errors.length === 0, handled, expected: total, threads: reports.length, errors, firstAt, lastAt }
}
