/**
 * Replies of a dying worker's last turn (issue 8, bug 3). One broker frame carries N requests of
 * N players that all route to one worker, then one request that kills that worker. The worker
 * runs the N in the turn it dies in. Whatever the death (process.exit in a handler, an error
 * thrown outside a handler, a blocked loop, out of memory), every one of the N gets the handler's
 * own reply, the fatal one gets exactly −10001, nothing is answered twice, and the master counts
 * the death (`deaths`) and the fatal task (`lost_in_flight`).
 *
 * Each case prints one JSON line: requests read / answered / unanswered / answered twice.
 */
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { waitFor } from '@peony/test-utils'
import { encodeTaskFrames, ReplyCode, type Task } from '@peony/protocol'
import { masterFixture, replies, req, type Reply } from './helpers.ts'

const DYING_APP = fileURLToPath(new URL('./fixtures/dying-app.ts', import.meta.url))
const boot = masterFixture({ appModule: DYING_APP })

type Kind = 'exit' | 'throw' | 'block' | 'oom'

/** The `deaths` cause each kind must be counted under. */
const CAUSE: Record<Kind, string> = { exit: 'exit_code', throw: 'uncaught', block: 'blocked', oom: 'out_of_memory' }

const N = 20

/** The client connection a reply goes to (every player of these tests has its own: 1000 + uid). */
const connOf = (r: Reply): number => (r.msg.cmd === 220 ? Number(r.msg.connId) : -1)

async function lastTurn(kind: Kind): Promise<void> {
  const { master, fwd, broker } = await boot({
    serverId: `last-${kind}`,
    ...(kind === 'block' ? { blockedTimeoutMs: 1_000 } : {}),
    ...(kind === 'oom' ? { resourceLimits: { maxOldGenerationSizeMb: 64 } } : {}),
  })
  // N + 3 players of one worker: N for the frame, one to die, one to warm up, one to probe after.
  const target = master.slotOf(req(1, 'hit', null))!
  const uids: number[] = []
  for (let u = 1; uids.length < N + 3; u++) if (master.slotOf(req(u, 'hit', null)) === target) uids.push(u)
  const [warm, probe, fatalUid] = [uids[N]!, uids[N + 1]!, uids[N + 2]!]
  const players = uids.slice(0, N)

  // The worker is past its first request: the frame's requests run in one turn of a warm worker.
  await broker.send([req(warm, 'hit', { seq: 0 })])
  await fwd.until(1)
  const before = master.stats().client_req
  const from = fwd.messages.length

  const tasks: Task[] = players.map((u, i) => req(u, 'hit', { seq: i + 1 }, {}, i + 1))
  const fatal = req(fatalUid, `die.${kind}`, null, {}, N + 1)
  tasks.push(fatal)
  const frames = encodeTaskFrames(tasks)
  expect(frames.length).toBe(1) // one ZeroMQ message
  await broker.sock.send(frames[0]!)

  // The death is counted, the fatal task lost, and the slot serves again (a probe answered by
  // the respawned worker through the egress thread).
  await waitFor(
    () => {
      const s = master.stats()
      return (s.deaths[CAUSE[kind]] ?? 0) >= 1 && s.lost_in_flight.all >= 1 && s.pending_tasks.all === 0 && s.in_flight.all === 0
    },
    { timeoutMs: 30_000, message: `the ${kind} death and its lost task are counted` },
  )
  await waitFor(() => master.stats().workers === 2, { timeoutMs: 20_000 })
  const probeConn = 1000 + probe
  await broker.send([req(probe, 'hit', { seq: 0 })])
  await waitFor(() => replies(fwd.messages.slice(from)).some((r) => connOf(r) === probeConn), { timeoutMs: 10_000 })
  // Every answer that is coming has come by now; a short grace for one still on its way.
  const answersOf = (): Map<number, Reply[]> => {
    const by = new Map<number, Reply[]>()
    for (const r of replies(fwd.messages.slice(from))) {
      const conn = connOf(r)
      if (conn === probeConn) continue
      const l = by.get(conn) ?? []
      l.push(r)
      by.set(conn, l)
    }
    return by
  }
  await waitFor(() => answersOf().size === N + 1, { timeoutMs: 3_000 }).catch(() => {})

  const s = master.stats()
  const by = answersOf()
  const read = s.client_req - before - 1 // minus the probe
  const answered = by.size
  const twice = [...by.values()].filter((l) => l.length > 1).length
  const ok = players.filter((u) => by.get(1000 + u)?.some((r) => r.ret === 0)).length
  console.log(
    JSON.stringify({
      test: `last turn: ${kind}`,
      read,
      answered,
      unanswered: tasks.length - answered,
      answeredTwice: twice,
      handlerReplies: ok,
      fatal: by.get(1000 + fatalUid)?.map((r) => r.ret) ?? [],
      deaths: s.deaths,
      lost_in_flight: s.lost_in_flight.all,
    }),
  )

  expect(read).toBe(N + 1)
  expect({ answered, unanswered: tasks.length - answered, answeredTwice: twice }).toEqual({ answered: N + 1, unanswered: 0, answeredTwice: 0 })
  // Each of the N: exactly one answer, the handler's own reply.
  for (let i = 0; i < N; i++) {
    const u = players[i]!
    const got = by.get(1000 + u) ?? []
    expect(got.length, `answers to player ${u}`).toBe(1)
    expect(got[0]!.ret, `player ${u}`).toBe(0)
    expect(got[0]!.body).toMatchObject({ cmd: 'hit', sn: i + 1, ret: 0, data: { hit: u, seq: i + 1, slot: target, gen: 0 } })
  }
  // The fatal one: exactly one answer, −10001.
  expect((by.get(1000 + fatalUid) ?? []).map((r) => r.ret)).toEqual([ReplyCode.HANDLER_FAILED])
  expect(twice).toBe(0)
  expect(s.deaths).toEqual({ [CAUSE[kind]]: 1 })
  expect(s.lost_in_flight.all).toBe(1)
  expect(s.lost_in_flight.workers[target]).toBe(1)
}

describe('a worker that dies answers every request of its last turn', () => {
  it.each<Kind>(['exit', 'throw', 'block', 'oom'])(
    `${N} requests in one frame, then one that kills the worker by %s: ${N} handler replies, one −10001, none twice`,
    async (kind) => {
      await lastTurn(kind)
    },
    60_000,
  )
})
