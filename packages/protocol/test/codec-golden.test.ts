/**
 * Golden fixtures written by Python's msgpack (test/fixtures/regenerate.py): our decoders read
 * them as the manifest says, our encoders write byte-identical frames where Python's choice is
 * canonical, and Python reads the frames we write (ints stay ints at every size).
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import {
  decodeAck,
  decodeEgress,
  type DecodeOptions,
  decodeTasks,
  type EgressMessage,
  encodeAck,
  encodeEgress,
  encodeEgressBatch,
  encodeTask,
  encodeTasks,
  msgpackBodyCodec,
  packValue,
  type PushBody,
  type Rejection,
  type ReplyBody,
  type Sequenced,
  type Task,
} from '@peony/protocol'

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures')
const PYTHON = '/usr/bin/python3'

/** Python's msgpack decodes our frames below; without it those tests skip loudly (and fail under CI). */
const pythonMsgpack = spawnSync(PYTHON, ['-c', 'import msgpack']).status === 0
if (!pythonMsgpack) {
  const msg = `\n*** ${PYTHON} with msgpack is missing: "Python decodes our frames" cannot run (apt-get install python3-msgpack) ***\n`
  if (process.env.CI === 'true') throw new Error(msg)
  console.warn(msg)
}

interface ExpectedReject {
  code: string
  index: number
  key?: string
  partial?: Record<string, unknown>
}

interface Case {
  name: string
  kind: 'tasks' | 'egress' | 'ack' | 'request' | 'reply' | 'bad-request'
  file: string
  canonical: boolean
  batch?: boolean
  options?: DecodeOptions
  tasks?: unknown[]
  messages?: unknown[]
  rejects?: ExpectedReject[]
  ack?: string | null
  request?: unknown
  reply?: unknown
  peek?: unknown
}

const manifest = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8')) as { cases: Case[] }
const cases = manifest.cases

/** Tagged manifest JSON → JS values: {$bigint} → bigint, {$bin} → Uint8Array. */
function untag(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(untag)
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>
    if (typeof o.$bigint === 'string') return BigInt(o.$bigint)
    if (typeof o.$bin === 'string') return new Uint8Array(Buffer.from(o.$bin, 'hex'))
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(o)) out[k] = untag(x)
    return out
  }
  return v
}

function frameOf(c: Case): Uint8Array {
  return new Uint8Array(readFileSync(join(FIXTURES, c.file)))
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

function checkRejects(actual: Rejection[], expected: ExpectedReject[]): void {
  expect(actual.map((r) => ({ code: r.code, index: r.index }))).toEqual(expected.map((r) => ({ code: r.code, index: r.index })))
  expected.forEach((e, i) => {
    const a = actual[i]!
    expect(typeof a.message).toBe('string')
    if (e.key !== undefined) expect(a.key).toBe(e.key)
    if (e.partial !== undefined) {
      expect(a.partial).toBeDefined()
      expect(a.partial).toMatchObject(untag(e.partial) as object)
      // the field to blame is not in the partial
      const camel = e.key?.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
      if (camel !== undefined && camel !== 'cmd' && !camel.includes('[')) {
        expect((a.partial as Record<string, unknown>)[camel]).toBeUndefined()
      }
    }
  })
}

describe('golden fixtures: the manifest is complete', () => {
  it('has every kind of case and every rejection cause', () => {
    const kinds = new Set(cases.map((c) => c.kind))
    expect([...kinds].sort()).toEqual(['ack', 'bad-request', 'egress', 'reply', 'request', 'tasks'])
    const codes = new Set(cases.flatMap((c) => (c.rejects ?? []).map((r) => r.code)))
    for (const code of ['FRAME_TOO_LARGE', 'MALFORMED', 'NOT_A_MAP', 'MISSING_FIELD', 'WRONG_TYPE', 'OUT_OF_RANGE']) {
      expect(codes).toContain(`PEONY_BROKER_${code}`)
    }
    expect(cases.length).toBeGreaterThan(100)
  })
})

describe('golden fixtures: intake tasks', () => {
  for (const c of cases.filter((x) => x.kind === 'tasks')) {
    it(c.name, () => {
      const frame = frameOf(c)
      const res = decodeTasks(frame, c.options)
      expect(res.tasks).toEqual(untag(c.tasks))
      checkRejects(res.rejects, c.rejects ?? [])
      // A ZeroMQ frame arrives as a Buffer: same result.
      const viaBuffer = decodeTasks(Buffer.from(frame), c.options)
      expect(viaBuffer.tasks).toEqual(res.tasks)
      expect(viaBuffer.rejects).toEqual(res.rejects)
      if (c.canonical) {
        const tasks = untag(c.tasks) as Task[]
        const ours = c.batch ? encodeTasks(tasks) : encodeTask(tasks[0]!)
        expect(hex(ours)).toBe(hex(frame))
      }
    })
  }
})

describe('golden fixtures: egress', () => {
  for (const c of cases.filter((x) => x.kind === 'egress')) {
    it(c.name, () => {
      const frame = frameOf(c)
      const res = decodeEgress(frame)
      expect(res.messages).toEqual(untag(c.messages))
      checkRejects(res.rejects, c.rejects ?? [])
      if (c.canonical) {
        const msgs = untag(c.messages) as (EgressMessage & Sequenced)[]
        const ours = c.batch ? encodeEgressBatch(msgs) : encodeEgress(msgs[0]!)
        expect(hex(ours)).toBe(hex(frame))
      }
    })
  }
})

describe('golden fixtures: acks', () => {
  for (const c of cases.filter((x) => x.kind === 'ack')) {
    it(c.name, () => {
      const frame = frameOf(c)
      const expected = c.ack === null || c.ack === undefined ? undefined : BigInt(c.ack)
      expect(decodeAck(frame)).toBe(expected)
      if (c.canonical && expected !== undefined) {
        expect(hex(encodeAck(expected))).toBe(hex(frame))
        if (expected <= BigInt(Number.MAX_SAFE_INTEGER)) expect(hex(encodeAck(Number(expected)))).toBe(hex(frame))
      }
    })
  }
})

describe('golden fixtures: business bodies', () => {
  for (const c of cases.filter((x) => x.kind === 'request' || x.kind === 'reply' || x.kind === 'bad-request')) {
    it(c.name, () => {
      const frame = frameOf(c)
      if (c.kind === 'request') {
        expect(msgpackBodyCodec.decodeRequest(frame)).toEqual(untag(c.request))
        const e = untag(c.request) as { cmd: number | string; sn?: unknown }
        const peek: Record<string, unknown> = { cmd: e.cmd }
        if (e.sn !== undefined) peek.sn = e.sn
        expect(msgpackBodyCodec.peekRequest(frame)).toEqual(peek)
      } else if (c.kind === 'reply') {
        const expected = untag(c.reply) as ReplyBody | PushBody
        expect(msgpackBodyCodec.decodeReply(frame)).toEqual(expected)
        const ours = 'ret' in expected ? msgpackBodyCodec.encodeReply(expected) : msgpackBodyCodec.encodePush(expected)
        expect(hex(ours)).toBe(hex(frame))
      } else {
        expect(() => msgpackBodyCodec.decodeRequest(frame)).toThrow(expect.objectContaining({ code: 'PEONY_BROKER_BODY_UNDECODABLE' }))
        expect(msgpackBodyCodec.peekRequest(frame)).toEqual(untag(c.peek))
      }
    })
  }
})

// ---- Python reads what we write ---------------------------------------------------------------

/** What Python's msgpack should see for a JS value: every int tagged {$int}, floats {$float}, bytes {$bin}. */
function pyView(v: unknown): unknown {
  if (typeof v === 'bigint') return { $int: v.toString() }
  if (typeof v === 'number') return Number.isSafeInteger(v) ? { $int: String(v) } : { $float: v }
  if (v instanceof Uint8Array) return { $bin: hex(v) }
  if (Array.isArray(v)) return v.map(pyView)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase())] = pyView(x)
    return out
  }
  return v
}

function pythonDecode(frames: Uint8Array[]): { ok?: unknown; error?: string }[] {
  const res = spawnSync(PYTHON, [join(FIXTURES, 'pydecode.py')], { input: JSON.stringify(frames.map(hex)), encoding: 'utf8' })
  if (res.status !== 0) throw new Error(`pydecode.py failed: ${res.stderr}`)
  return JSON.parse(res.stdout) as { ok?: unknown; error?: string }[]
}

describe.skipIf(!pythonMsgpack)('Python decodes our frames', () => {
  const egress: (EgressMessage & Sequenced)[] = [
    { cmd: 220, nodeId: 3, connId: 2 ** 40, body: new Uint8Array([1, 2, 3]), tag: 7, ret: -10002, sender: 'a', seq: 1 },
    { cmd: 220, nodeId: -1, connId: Number.MAX_SAFE_INTEGER, body: new Uint8Array(0) },
    { cmd: 230, rows: [{ uids: [1, 2 ** 40, 2n ** 63n - 1n, -1, -2, -3], body: new Uint8Array(300), userdata: -1n, exclude: [2 ** 53 - 1] }] },
    { cmd: 240, nodeId: 2 ** 31 - 1, connId: -(2n ** 63n) },
    { cmd: 250, uids: [2 ** 32, 2 ** 32 - 1], userdata: 2 ** 50, exclude: [] },
    { cmd: 260, nodeId: 1, connId: 2, uid: '玩家🐉', userdata: 3 },
    { cmd: 260, nodeId: 1, connId: 2, uid: 2n ** 53n + 1n },
    { cmd: 270, nodeId: 1, connId: 2, seq: 2n ** 64n - 1n, sender: 'x'.repeat(300) },
    { cmd: 280, nodeId: 1, connId: 2 ** 60 },
    { cmd: 100, uid: 2 ** 40, body: new Uint8Array([9]) },
    { cmd: 100, nodeId: 5, connId: 6, body: new Uint8Array(70000) },
  ]
  const tasks: Task[] = [
    {
      cmd: 10,
      uid: 2 ** 40,
      nodeId: 1,
      connId: 2n ** 53n + 1n,
      tag: -1,
      userdata: 2 ** 32,
      custom: -(2 ** 40),
      flags: 3,
      clientIp: '::1',
      ret: 0,
      body: new Uint8Array(5),
      ts: 1_764_000_000_000,
    },
    { cmd: -2147483648, uid: 'é'.repeat(64) },
  ]

  it('egress messages, one per frame and as a batch: ints are ints at every size', () => {
    const frames = [...egress.map((m) => encodeEgress(m)), encodeEgressBatch(egress)]
    const decoded = pythonDecode(frames)
    const expected = egress.map((m) => {
      // a number beyond 2^53 that is integral is sent as an int: Python sees the exact value
      const v = pyView(m) as Record<string, unknown>
      if (m.cmd === 280) v.conn_id = { $int: (2n ** 60n).toString() }
      return v
    })
    decoded.slice(0, egress.length).forEach((d, i) => expect(d).toEqual({ ok: expected[i] }))
    expect(decoded[egress.length]).toEqual({ ok: expected })
  })

  it('task frames', () => {
    const decoded = pythonDecode([encodeTask(tasks[0]!), encodeTasks(tasks)])
    expect(decoded[0]).toEqual({ ok: pyView(tasks[0]) })
    expect(decoded[1]).toEqual({ ok: pyView(tasks) })
  })

  it('bodies, acks and generic values', () => {
    const data = { n: 2 ** 40, big: 2n ** 63n - 1n, neg: -(2 ** 33), f: 0.5, whole: 2 ** 60, s: 'ünï', bin: new Uint8Array([0]), list: [null, true, {}] }
    const frames = [
      msgpackBodyCodec.encodeReply({ cmd: 'x', sn: 2 ** 40, ret: -10001, data }),
      msgpackBodyCodec.encodePush({ cmd: 7, data: [2 ** 32] }),
      encodeAck(2n ** 64n - 1n),
      encodeAck(2 ** 40),
      packValue(data),
    ]
    const decoded = pythonDecode(frames)
    const dataView = pyView(data) as Record<string, unknown>
    // generic values follow the brief's rule: a number that is not a safe integer is a float64
    expect(dataView.whole).toEqual({ $float: 2 ** 60 })
    expect(decoded[0]).toEqual({ ok: { cmd: 'x', sn: { $int: String(2 ** 40) }, ret: { $int: '-10001' }, data: dataView } })
    expect(decoded[1]).toEqual({ ok: { cmd: { $int: '7' }, data: [{ $int: String(2 ** 32) }] } })
    expect(decoded[2]).toEqual({ ok: { ack: { $int: (2n ** 64n - 1n).toString() } } })
    expect(decoded[3]).toEqual({ ok: { ack: { $int: String(2 ** 40) } } })
    expect(decoded[4]).toEqual({ ok: dataView })
  })
})
