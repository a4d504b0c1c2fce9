/**
 * Sustained overload at three times capacity (issue 8, items 4 and 7), with the default
 * `maxQueueWaitMs` (1,000 ms): a real master with 2 worker threads running `busy` (a synchronous
 * handler that spins BUSY_MS of CPU), real ZeroMQ, and a broker in its own process
 * (peer/paced-broker.ts), so the offered load keeps its pace whatever the master's event loop does.
 *
 * A round:
 * 1. capacity, measured in this run: closed loop (at most WINDOW requests unanswered, enough to
 *    keep both workers' claimed windows full with one more queued behind) for CAPACITY_MS;
 *    capacity = the most handlers started in any one second of it, leaving out the first
 *    SETTLE_MS (the best second, not the mean: on a shared host other processes take the CPU in
 *    bursts, and a starved second says nothing about what the server can do);
 * 2. overload: open loop at 3 × capacity for OVERLOAD_MS.
 * On a shared host a capacity phase starved by other processes makes "3 × capacity" no overload
 * at all; a round whose offered rate was not at least twice what the workers then served is
 * followed by a second round (the figures are those of the last round).
 *
 * Then: every request of every phase is answered exactly once (matched by uid and sn); under
 * overload the answers are ret 0 or -10002 only, some shed for queue_wait; the p99 wait of the
 * ret-0 requests is bounded (see the bounds below); goodput stays near capacity.
 *
 * Times are absolute ms (`performance.timeOrigin + performance.now()`), comparable across the
 * broker process, the master thread and the worker threads. Per request `t` = send (the broker
 * stamps it when it builds the frame), `d` = dispatch (the master's postMessage of the batch that
 * carries it, seen by an observer on the worker's postMessage that only reads a copy of the
 * batch), `s` = handler start (the handler's first statement). `d − t` is the master-side figure:
 * the time in the master proper (intake read → dispatch, which maxQueueWaitMs bounds) plus the
 * send → intake hop. `s − t` adds the wait in the worker's inbox.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { TransferListItem } from 'node:worker_threads'
import { afterEach, describe, expect, it } from 'vitest'
import { decodeTasks, type EgressMessage, msgpackBodyCodec, ReplyCode } from '@peony/protocol'
import type { MasterStats } from '../src/index.ts'
import { masterFixture, replies } from './helpers.ts'

const BUSY_APP = fileURLToPath(new URL('./fixtures/busy-app.ts', import.meta.url))
const BROKER = fileURLToPath(new URL('./peer/paced-broker.ts', import.meta.url))
const WORKERS = 2
/** The broker's uids: sn → uid 1 + sn % UIDS, connId = uid (peer/paced-broker.ts). */
const UIDS = 1000
/** The master's defaults this test relies on (options.ts, master.ts). */
const MAX_QUEUE_WAIT_MS = 1_000
const CLAIMED_MAX_SIZE = 1_024
const DISPATCH_BATCH = 256
/**
 * Unanswered requests in the closed loop: per worker a full claimed window in the worker and
 * another queued in the master, so that the worker has its next batch the moment it reports one
 * done, however long the answers take to come back round to the broker, while the queued ones
 * wait about one batch (~0.5 s), under maxQueueWaitMs unless the host starves the workers.
 */
const WINDOW = 4 * CLAIMED_MAX_SIZE
const CAPACITY_MS = 5_000
const OVERLOAD_MS = 10_000
/** Left out of both rate measurements: warm-up, and the first second of overload while the queue builds. */
const SETTLE_MS = 1_500

const boot = masterFixture({ appModule: BUSY_APP, groups: [{ id: 1, count: WORKERS }], stopTimeoutMs: 10_000 })
const cleanups: (() => void)[] = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

const clock = (): number => performance.timeOrigin + performance.now()

/** What the broker process reports at the end of a phase. */
interface Done {
  sent: number
  /** The phase's start: request k of an open loop was due at t0 + k / rate. */
  t0: number
  ms: number
  lagP99: number
  lagMax: number
}

/** One request's answer, as the fake forwarder got it. */
interface Answer {
  sn: number
  uid: number
  ret: number
  /** Send time, handler start (ret 0 only). */
  t: number
  s: number
  /** When it reached the forwarder (to within the 2 ms poll). */
  arrived: number
}

interface Round {
  /** Handlers started in the best second of the closed loop, and per second on average. */
  capacity: number
  capacityMean: number
  rate: number
  cap: Done
  over: Done
  /** sn of the first request of the capacity phase, of the overload phase, and after the last. */
  snCap: number
  snOver: number
  snEnd: number
  /** When the overload phase started and ended (its sender's last request). */
  p2: number
  p2end: number
  /** Stats before the round, after the capacity phase, after the overload phase. */
  stats: [MasterStats, MasterStats, MasterStats]
}

/** Nearest-rank percentile of ascending `xs`. */
const pct = (xs: readonly number[], p: number): number => (xs.length === 0 ? NaN : xs[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!)
const r1 = (x: number): number => Math.round(x * 10) / 10
const ms = (xs: readonly number[]): { p50: number; p99: number; max: number } => ({ p50: r1(pct(xs, 50)), p99: r1(pct(xs, 99)), max: r1(xs.at(-1) ?? NaN) })
/** Rate per second of the values of `xs` that lie in [from, to). */
const rateIn = (xs: readonly number[], from: number, to: number): number => xs.filter((x) => x >= from && x < to).length / ((to - from) / 1000)
/** The most values of ascending `xs` in any one-second window within [from, to). */
function peakRate(xs: readonly number[], from: number, to: number): number {
  const w = xs.filter((x) => x >= from && x < to)
  let best = 0
  for (let i = 0, j = 0; i < w.length; i++) {
    while (w[i]! - w[j]! >= 1000) j++
    best = Math.max(best, i - j + 1)
  }
  return best
}

describe('overload', () => {
  it('at 3× capacity (measured in the run): every request answered once, the p99 wait of the served ones bounded by maxQueueWaitMs + one dispatch batch, goodput kept', async () => {
    // The fixture's own broker only lends its endpoint; requests come from the broker process.
    const {
      master,
      fwd,
      broker: { endpoint },
    } = await boot()

    // Dispatch times by sn, from an observer on each worker's postMessage: it copies the batch
    // (the buffer is transferred) and decodes the copy after the real post, so the worker gets
    // its batch as early as without it, but for a memcpy.
    const dispatchedAt = new Map<number, number>()
    for (let slot = 0; slot < WORKERS; slot++) {
      const w = master.workerThread(slot)!
      const post = w.postMessage.bind(w)
      w.postMessage = (msg: unknown, transfer?: readonly TransferListItem[]): void => {
        const m = msg as { t?: string; buf?: ArrayBuffer }
        if (m.t !== 'tasks' || m.buf === undefined) {
          post(msg, transfer)
          return
        }
        const at = clock()
        const copy = new Uint8Array(m.buf).slice()
        post(msg, transfer)
        for (const task of decodeTasks(copy, { maxFrameBytes: Number.MAX_SAFE_INTEGER }).tasks) {
          dispatchedAt.set(Number(msgpackBodyCodec.peekRequest(task.body!).sn), at)
        }
      }
    }

    // The answers, decoded as they come; `foreign` counts anything that is not one of ours.
    const answers: Answer[] = []
    let foreign = 0
    const arrivedAt: number[] = []
    const poll = setInterval(() => {
      const now = clock()
      while (arrivedAt.length < fwd.messages.length) arrivedAt.push(now)
    }, 2)
    cleanups.push(() => clearInterval(poll))
    const collect = (): void => {
      for (let i = answers.length + foreign; i < fwd.messages.length; i++) {
        const r = replies([fwd.messages[i]!])[0]
        const sn = Number(r?.body.sn)
        const uid = Number((fwd.messages[i] as Extract<EgressMessage, { cmd: 220 }>).connId)
        if (r === undefined || !Number.isInteger(sn) || uid !== 1 + (sn % UIDS)) {
          foreign++
          continue
        }
        const d = (r.body.data ?? {}) as { t?: number; s?: number }
        answers.push({ sn, uid, ret: r.ret, t: d.t ?? NaN, s: d.s ?? NaN, arrived: arrivedAt[i] ?? clock() })
      }
    }

    const child = spawn(process.execPath, ['--conditions=@peony/source', '--import', 'tsx', BROKER, endpoint], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    cleanups.push(() => child.kill('SIGKILL'))
    const next = <T>(t: string): Promise<T> =>
      new Promise((resolve, reject) => {
        const onMsg = (m: { t: string }): void => {
          if (m.t !== t) return
          child.off('message', onMsg)
          child.off('exit', onExit)
          resolve(m as T)
        }
        const onExit = (code: number | null): void => reject(new Error(`the broker process exited (${code}) before '${t}'`))
        child.on('message', onMsg)
        child.once('exit', onExit)
      })
    await next('ready')

    const round = async (snCap: number): Promise<Round> => {
      const s0 = master.stats()
      // ── capacity: closed loop ──
      const base = fwd.messages.length
      const feedback = setInterval(() => child.connected && child.send({ t: 'answered', n: fwd.messages.length - base }), 5)
      cleanups.push(() => clearInterval(feedback))
      const p1 = clock()
      child.send({ t: 'window', size: WINDOW, ms: CAPACITY_MS, sn0: snCap })
      const cap = await next<Done>('done')
      const p1end = clock()
      clearInterval(feedback)
      const snOver = snCap + cap.sent
      await fwd.until(snOver, 20_000)
      const s1 = master.stats()
      collect()
      const starts = answers.filter((a) => a.sn >= snCap && a.ret === 0).map((a) => a.s)
      const capacity = peakRate(
        starts.sort((a, b) => a - b),
        p1 + SETTLE_MS,
        p1end,
      )
      const capacityMean = rateIn(starts, p1 + SETTLE_MS, p1end)
      // ── overload: open loop at 3 × capacity ──
      const rate = Math.round(3 * capacity)
      const p2 = clock()
      child.send({ t: 'open', rate, ms: OVERLOAD_MS, sn0: snOver })
      const over = await next<Done>('done')
      const p2end = clock()
      const snEnd = snOver + over.sent
      await fwd.until(snEnd, 30_000)
      const s2 = master.stats()
      collect()
      return { capacity, capacityMean, rate, cap, over, snCap, snOver, snEnd, p2, p2end, stats: [s0, s1, s2] }
    }
    const goodputOf = (r: Round): number =>
      rateIn(
        answers.filter((a) => a.sn >= r.snOver && a.sn < r.snEnd && a.ret === 0).map((a) => a.s),
        r.p2 + SETTLE_MS,
        r.p2end,
      )

    let rounds = 1
    let last = await round(0)
    if (last.rate < 2 * goodputOf(last)) {
      rounds++
      last = await round(last.snEnd)
    }
    // Anything answered twice would arrive within a moment: give it one.
    await new Promise((r) => setTimeout(r, 500))
    collect()

    // ── every request answered exactly once, by uid and sn ──
    const total = last.snEnd
    const seen = new Uint8Array(total)
    let twice = 0
    for (const a of answers) {
      if (a.sn >= total) foreign++
      else if (seen[a.sn]! > 0) twice++
      else seen[a.sn] = 1
    }
    let unanswered = 0
    for (let sn = 0; sn < total; sn++) if (seen[sn] === 0) unanswered++

    // ── the last round's figures ──
    const { capacity, capacityMean, rate, cap, over, snCap, snOver, snEnd, stats } = last
    const kinds = (from: number, to: number): { ok: number; shed: number; failed: number; other: number } => {
      const k = { ok: 0, shed: 0, failed: 0, other: 0 }
      for (const a of answers) {
        if (a.sn < from || a.sn >= to) continue
        if (a.ret === 0) k.ok++
        else if (a.ret === ReplyCode.QUEUE_FULL) k.shed++
        else if (a.ret === ReplyCode.HANDLER_FAILED) k.failed++
        else k.other++
      }
      return k
    }
    const reasons = (i: 0 | 1 | 2): { queue_wait: number; queue_full: number } => ({
      // queue_wait is absent before the issue (f1e251f)
      queue_wait: stats[i].discard_tasks.reasons.queue_wait ?? 0,
      queue_full: stats[i].discard_tasks.reasons.queue_full,
    })
    const capKinds = kinds(snCap, snOver)
    const overKinds = kinds(snOver, snEnd)
    const queueWait = reasons(2).queue_wait - reasons(1).queue_wait
    const queueFull = reasons(2).queue_full - reasons(1).queue_full
    const waitStart: number[] = [] // s − t
    const waitDispatch: number[] = [] // d − t
    const inWorker: number[] = [] // s − d
    const shedAnswer: number[] = [] // forwarder arrival − due time, of the -10002s
    const startsBySlot: number[][] = Array.from({ length: WORKERS }, () => [])
    for (const a of answers) {
      if (a.sn < snOver || a.sn >= snEnd) continue
      if (a.ret === ReplyCode.QUEUE_FULL) shedAnswer.push(a.arrived - (over.t0 + ((a.sn - snOver) * 1000) / rate))
      if (a.ret !== 0) continue
      const d = dispatchedAt.get(a.sn) ?? NaN
      waitStart.push(a.s - a.t)
      waitDispatch.push(d - a.t)
      inWorker.push(a.s - d)
      startsBySlot[master.slotOf({ cmd: 10, uid: a.uid })!]!.push(a.s)
    }
    for (const xs of [waitStart, waitDispatch, inWorker, shedAnswer, ...startsBySlot]) xs.sort((a, b) => a - b)
    const goodput = goodputOf(last)

    // The bounds (item 4: "maxQueueWaitMs plus one dispatch batch").
    // - One dispatch batch. Under overload pump refills a worker's whole claimed window in one
    //   message as soon as the worker reports its last batch done (one 'done' per worker turn),
    //   so a message carries claimedMaxSize tasks; the worker runs the synchronous handlers of a
    //   message back to back in one turn, and the last of them starts about one batch's time
    //   after its dispatch. That time is measured here, per worker, from the handler starts:
    //   the longest stretch of claimedMaxSize consecutive starts on one worker during the
    //   overload (not claimedMaxSize × the mean service time: on this 2-core host the workers
    //   share the CPU with the master, the egress thread, the broker process and whatever else
    //   runs, and a batch that a worker ran while descheduled took longer).
    // - `slack`: one early-pump batch (DISPATCH_BATCH tasks) of mean service time, for the
    //   send → intake hop (the broker's socket, ZeroMQ, the master's receive loop) and the
    //   pump's turn, which are in neither maxQueueWaitMs nor the worker.
    // master side (d − t): maxQueueWaitMs + slack (the shedding check is at dispatch);
    // handler start (s − t): maxQueueWaitMs + one dispatch batch + slack.
    const service = (WORKERS * 1000) / goodput
    const slack = DISPATCH_BATCH * service
    let batch = 0
    for (const xs of startsBySlot) {
      for (let i = 0; i + CLAIMED_MAX_SIZE - 1 < xs.length; i++) batch = Math.max(batch, xs[i + CLAIMED_MAX_SIZE - 1]! - xs[i]! + service)
    }
    const dispatchBound = MAX_QUEUE_WAIT_MS + slack
    const startBound = MAX_QUEUE_WAIT_MS + batch + slack
    console.log(
      JSON.stringify({
        rounds,
        capacity: Math.round(capacity),
        capacityMean: Math.round(capacityMean),
        offered: rate,
        offeredAchieved: Math.round(over.sent / (over.ms / 1000)),
        senderLagMs: { p99: r1(over.lagP99), max: r1(over.lagMax) },
        capacityPhase: {
          sent: cap.sent,
          ...capKinds,
          queueWait: reasons(1).queue_wait - reasons(0).queue_wait,
          queueFull: reasons(1).queue_full - reasons(0).queue_full,
        },
        sent: over.sent,
        answeredOk: overKinds.ok,
        answeredShed: overKinds.shed,
        shedQueueWait: stats[2].discard_tasks.reasons.queue_wait === undefined ? null : queueWait,
        shedQueueFull: queueFull,
        answeredFailed: overKinds.failed,
        answeredOther: overKinds.other,
        unanswered,
        twice,
        foreign,
        waitStartMs: ms(waitStart),
        waitDispatchMs: ms(waitDispatch),
        inWorkerMs: ms(inWorker),
        shedAnsweredAfterMs: ms(shedAnswer),
        serviceMs: Math.round(service * 1000) / 1000,
        batchMs: r1(batch),
        batchMeanMs: r1(CLAIMED_MAX_SIZE * service),
        startBoundMs: Math.round(startBound),
        dispatchBoundMs: Math.round(dispatchBound),
        goodput: Math.round(goodput),
        goodputRatio: Math.round((goodput / capacity) * 100) / 100,
        deaths: stats[2].deaths,
      }),
    )

    // every request of every phase answered exactly once
    expect({ unanswered, twice, foreign }).toEqual({ unanswered: 0, twice: 0, foreign: 0 })
    // the closed loop: ret 0, or -10002 for any that waited past 1 s (only when the host starves
    // the workers so that one batch takes longer than that)
    expect(capKinds.failed + capKinds.other).toBe(0)
    expect(capKinds.shed).toBe(reasons(1).queue_wait - reasons(0).queue_wait + reasons(1).queue_full - reasons(0).queue_full)
    // the broker offered what was asked (late only in bursts it caught up), and it was an overload
    expect(over.sent).toBe(Math.floor((rate * OVERLOAD_MS) / 1000))
    expect(over.sent / (over.ms / 1000)).toBeGreaterThan(0.95 * rate)
    expect(rate).toBeGreaterThanOrEqual(2 * goodput)
    // overload: ret 0 or -10002, nothing else; the -10002 are the master's sheds, some for queue_wait
    expect(overKinds.failed + overKinds.other).toBe(0)
    expect(overKinds.shed).toBe(queueWait + queueFull)
    expect(queueWait).toBeGreaterThan(0)
    expect(stats[2].deaths).toEqual({})
    // goodput does not collapse
    expect(goodput).toBeGreaterThanOrEqual(0.5 * capacity)
    // item 4: the wait of the requests that ran is bounded (by the master's defaults)
    expect([master.options.maxQueueWaitMs, master.options.claimedMaxSize]).toEqual([MAX_QUEUE_WAIT_MS, CLAIMED_MAX_SIZE])
    expect(waitDispatch.some(Number.isNaN)).toBe(false)
    expect(pct(waitDispatch, 99)).toBeLessThanOrEqual(dispatchBound)
    expect(pct(waitStart, 99)).toBeLessThanOrEqual(startBound)
  }, 60_000)
})
