/**
 * Unit tests of the codec's edges: the integer rules of the writers, encoder refusals, frame
 * splitting, zero-copy bodies, hostile nesting, the generic reader and the body codec.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  BrokerErrorCode,
  decodeAck,
  decodeEgress,
  decodeTasks,
  Defaults,
  type EgressMessage,
  encodeAck,
  encodeEgress,
  encodeTask,
  encodeTaskFrames,
  encodeTasks,
  msgpackBodyCodec,
  packValue,
  type Task,
  unpackValue,
} from '@peony/protocol'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h.replace(/\s+/g, ''), 'hex'))
const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts))
const ENCODE_FAILED = { code: BrokerErrorCode.ENCODE_FAILED }
const UNDECODABLE = { code: BrokerErrorCode.BODY_UNDECODABLE }

describe('integer rules of the writers', () => {
  it('packValue: safe integers are ints in the smallest encoding, never floats', () => {
    expect(hex(packValue(0))).toBe('00')
    expect(hex(packValue(127))).toBe('7f')
    expect(hex(packValue(128))).toBe('cc80')
    expect(hex(packValue(65535))).toBe('cdffff')
    expect(hex(packValue(2 ** 32 - 1))).toBe('ceffffffff')
    expect(hex(packValue(2 ** 32))).toBe('cf0000000100000000')
    expect(hex(packValue(2 ** 40))).toBe('cf0000010000000000')
    expect(hex(packValue(Number.MAX_SAFE_INTEGER))).toBe('cf001fffffffffffff')
    expect(hex(packValue(-1))).toBe('ff')
    expect(hex(packValue(-32))).toBe('e0')
    expect(hex(packValue(-33))).toBe('d0df')
    expect(hex(packValue(-129))).toBe('d1ff7f')
    expect(hex(packValue(-(2 ** 31)))).toBe('d280000000')
    expect(hex(packValue(-(2 ** 31) - 1))).toBe('d3ffffffff7fffffff')
    expect(hex(packValue(-Number.MAX_SAFE_INTEGER))).toBe('d3ffe0000000000001')
  })

  it('packValue: non-integral numbers (and numbers beyond the safe range) are float64; bigints are ints', () => {
    expect(hex(packValue(1.5))).toBe('cb3ff8000000000000')
    expect(hex(packValue(2 ** 60))).toBe('cb43b0000000000000')
    expect(hex(packValue(2n ** 60n))).toBe('cf1000000000000000')
    expect(hex(packValue(5n))).toBe('05')
    expect(hex(packValue(2n ** 64n - 1n))).toBe('cfffffffffffffffff')
    expect(hex(packValue(-(2n ** 63n)))).toBe('d38000000000000000')
    expect(() => packValue(2n ** 64n)).toThrow(expect.objectContaining(ENCODE_FAILED))
    expect(() => packValue(-(2n ** 63n) - 1n)).toThrow(expect.objectContaining(ENCODE_FAILED))
  })

  it('envelope int fields: an integral number beyond 2^53 is still an int on the wire, never a float', () => {
    const frame = encodeTask({ cmd: 10, connId: 2 ** 60, userdata: -(2 ** 60) })
    expect(hex(frame)).toContain('cf1000000000000000')
    expect(hex(frame)).toContain('d3f000000000000000')
    expect(decodeTasks(frame).tasks[0]).toMatchObject({ connId: 2n ** 60n, userdata: -(2n ** 60n) })
  })

  it('unpackValue: ints beyond ±(2^53−1) are bigints, others numbers', () => {
    expect(unpackValue(bytes('cf0020000000000001'))).toBe(2n ** 53n + 1n)
    expect(unpackValue(bytes('cf001fffffffffffff'))).toBe(Number.MAX_SAFE_INTEGER)
    expect(unpackValue(bytes('d3ffe0000000000000'))).toBe(-(2n ** 53n))
    expect(unpackValue(bytes('d3ffe0000000000001'))).toBe(-Number.MAX_SAFE_INTEGER)
    expect(unpackValue(bytes('cfffffffffffffffff'))).toBe(2n ** 64n - 1n)
    expect(unpackValue(bytes('cb4000000000000000'))).toBe(2)
    expect(unpackValue(bytes('ca3fc00000'))).toBe(1.5)
  })
})

describe('encoders refuse what the decoder would reject', () => {
  const bad: [string, Task][] = [
    ['float cmd', { cmd: 1.5 }],
    ['cmd beyond int32', { cmd: 2 ** 31 }],
    ['negative uid', { cmd: 1, uid: -1 }],
    ['uid beyond int64', { cmd: 1, uid: 2n ** 63n }],
    ['uid str of 129 bytes', { cmd: 1, uid: 'é'.repeat(64) + 'x' }],
    ['float conn_id', { cmd: 1, connId: 0.5 }],
    ['conn_id beyond int64', { cmd: 1, connId: 2 ** 63 }],
    ['flags beyond uint16', { cmd: 1, flags: 0x10000 }],
    ['client_ip of 65 bytes', { cmd: 1, clientIp: 'x'.repeat(65) }],
    ['body not bytes', { cmd: 1, body: 'x' as unknown as Uint8Array }],
    ['node_id as bigint', { cmd: 1, nodeId: 1n as unknown as number }],
  ]
  for (const [name, task] of bad) {
    it(`task: ${name}`, () => {
      expect(() => encodeTask(task)).toThrow(expect.objectContaining(ENCODE_FAILED))
      expect(() => encodeTasks([{ cmd: 1 }, task])).toThrow(expect.objectContaining(ENCODE_FAILED))
    })
  }

  it('egress: unknown cmd, missing keys, bad seq', () => {
    const body = new Uint8Array(1)
    const cases = [
      { cmd: 999, nodeId: 1, connId: 2 },
      { cmd: 220, nodeId: 1, connId: 2 },
      { cmd: 220, nodeId: 1, body },
      { cmd: 260, nodeId: 1, connId: 2, uid: 0 },
      { cmd: 100, nodeId: 1, body },
      { cmd: 250, uids: [-4] },
      { cmd: 230, rows: [{ uids: [1] }] },
      { cmd: 240, nodeId: 1, connId: 2, seq: -1 },
      { cmd: 240, nodeId: 1, connId: 2, seq: 2n ** 64n },
    ]
    for (const m of cases) expect(() => encodeEgress(m as unknown as EgressMessage)).toThrow(expect.objectContaining(ENCODE_FAILED))
  })

  it('acks: uint64 only', () => {
    expect(() => encodeAck(-1)).toThrow(expect.objectContaining(ENCODE_FAILED))
    expect(() => encodeAck(2n ** 64n)).toThrow(expect.objectContaining(ENCODE_FAILED))
    expect(() => encodeAck(1.5)).toThrow(expect.objectContaining(ENCODE_FAILED))
    expect(decodeAck(encodeAck(2 ** 40))).toBe(2n ** 40n)
  })

  it('a failed encode leaves the shared writer clean for the next one', () => {
    expect(() => encodeTask({ cmd: 1, uid: -1 })).toThrow()
    expect(hex(encodeTask({ cmd: 10 }))).toBe('81a3636d640a')
  })
})

describe('encodeTaskFrames', () => {
  const tasks: Task[] = Array.from({ length: 100 }, (_, i) => ({ cmd: 10, uid: i + 1, body: new Uint8Array(100) }))

  it('splits so every frame stays within the limit, in order, each frame owning its memory', () => {
    const one = encodeTask(tasks[0]!).length
    const frames = encodeTaskFrames(tasks, 10 * one + 3)
    expect(frames.length).toBeGreaterThan(9)
    const out: Task[] = []
    for (const f of frames) {
      expect(f.length).toBeLessThanOrEqual(10 * one + 3)
      expect(f.byteOffset).toBe(0)
      expect(f.buffer.byteLength).toBe(f.length)
      out.push(...decodeTasks(f).tasks)
    }
    expect(out).toEqual(tasks)
    expect(encodeTaskFrames(tasks)).toHaveLength(1)
  })

  it('no tasks, no frames; a task too large for any frame throws; a bad limit is a RangeError', () => {
    expect(encodeTaskFrames([])).toEqual([])
    expect(() => encodeTaskFrames([{ cmd: 1, body: new Uint8Array(1000) }], 500)).toThrow(expect.objectContaining(ENCODE_FAILED))
    expect(() => encodeTaskFrames(tasks, 0)).toThrow(RangeError)
  })

  it('a frame exactly at the limit is accepted by the decoder with the same limit', () => {
    const frame = encodeTasks(tasks.slice(0, 3))
    const frames = encodeTaskFrames(tasks.slice(0, 3), frame.length)
    expect(frames).toHaveLength(1)
    expect(hex(frames[0]!)).toBe(hex(frame))
    expect(decodeTasks(frame, { maxFrameBytes: frame.length }).tasks).toHaveLength(3)
    expect(decodeTasks(frame, { maxFrameBytes: frame.length - 1 }).rejects[0]!.code).toBe(BrokerErrorCode.FRAME_TOO_LARGE)
  })
})

describe('decodeTasks edges', () => {
  it('body is a zero-copy view into the frame', () => {
    const frame = encodeTasks([
      { cmd: 10, body: new Uint8Array([1, 2, 3]) },
      { cmd: 10, body: new Uint8Array([4, 5]) },
    ])
    const [a, b] = decodeTasks(frame).tasks
    expect(a!.body!.buffer).toBe(frame.buffer)
    expect(b!.body!.buffer).toBe(frame.buffer)
    frame[frame.length - 1] = 9
    expect([...b!.body!]).toEqual([4, 9])
    // from a Buffer too, and still a plain Uint8Array
    const buf = Buffer.from(encodeTask({ cmd: 10, body: new Uint8Array([7]) }))
    const body = decodeTasks(buf).tasks[0]!.body!
    expect(body.buffer).toBe(buf.buffer)
    expect(Object.getPrototypeOf(body)).toBe(Uint8Array.prototype)
  })

  it('the size limit is checked before decoding, with the default of 1 MiB', () => {
    const big = new Uint8Array(Defaults.MAX_FRAME_BYTES + 1).fill(0xc1) // not even msgpack
    expect(decodeTasks(big).rejects).toEqual([expect.objectContaining({ code: BrokerErrorCode.FRAME_TOO_LARGE, index: -1 })])
    const ok = encodeTask({ cmd: 1, body: new Uint8Array(Defaults.MAX_FRAME_BYTES - 20) })
    expect(ok.length).toBeLessThanOrEqual(Defaults.MAX_FRAME_BYTES)
    expect(decodeTasks(ok).tasks).toHaveLength(1)
  })

  it('hostile nesting and lying lengths never overflow the stack or allocate by the claimed size', () => {
    const deep = cat(bytes('82 a3636d64 0a a178'), new Uint8Array(500_000).fill(0x91), bytes('c0'))
    expect(decodeTasks(deep).tasks).toEqual([expect.objectContaining({ cmd: 10 })])
    expect(decodeTasks(deep.subarray(0, deep.length - 1)).rejects[0]!.code).toBe(BrokerErrorCode.MALFORMED)
    const deepMaps = cat(
      bytes('82 a3636d64 0a a178'),
      new Uint8Array(300_000).fill(0x81).map((_, i) => (i % 2 ? 0xa0 : 0x81)),
      bytes('c0'),
    )
    expect(decodeTasks(deepMaps).rejects).toEqual([])
    expect(decodeTasks(bytes('df ffffffff a3636d64 0a')).rejects[0]!.code).toBe(BrokerErrorCode.MALFORMED)
    expect(decodeTasks(bytes('81 a3636d64 c6 ffffffff 00')).rejects[0]!.code).toBe(BrokerErrorCode.MALFORMED)
    expect(decodeEgress(deep).rejects[0]).toMatchObject({ code: BrokerErrorCode.OUT_OF_RANGE, key: 'cmd' }) // 10 is no egress cmd
  })

  it('a rejected element carries what could be read, so the master can answer it', () => {
    const frame = cat(
      bytes('85'),
      packValue('cmd'),
      packValue(10),
      packValue('node_id'),
      packValue(3),
      packValue('conn_id'),
      packValue(2n ** 60n),
      packValue('tag'),
      packValue(5),
      packValue('uid'),
      packValue(-1),
    )
    const { tasks, rejects } = decodeTasks(frame)
    expect(tasks).toEqual([])
    expect(rejects).toEqual([
      {
        code: BrokerErrorCode.OUT_OF_RANGE,
        index: 0,
        key: 'uid',
        message: expect.any(String),
        partial: expect.objectContaining({ cmd: 10, nodeId: 3, connId: 2n ** 60n, tag: 5, uid: undefined }),
      },
    ])
  })

  it('cmd problems are reported before other fields', () => {
    const frame = cat(bytes('82'), packValue('uid'), packValue(-1), packValue('cmd'), packValue('x'))
    expect(decodeTasks(frame).rejects[0]).toMatchObject({ code: BrokerErrorCode.WRONG_TYPE, key: 'cmd' })
    const missing = cat(bytes('81'), packValue('uid'), packValue(-1))
    expect(decodeTasks(missing).rejects[0]).toMatchObject({ code: BrokerErrorCode.MISSING_FIELD, key: 'cmd' })
  })

  it('programmer errors: a non-bytes frame or a bad limit throw', () => {
    expect(() => decodeTasks('x' as unknown as Uint8Array)).toThrow(TypeError)
    expect(() => decodeTasks(new Uint8Array([0x90]), { maxFrameBytes: -1 })).toThrow(RangeError)
  })

  it('decoding is not disturbed by an earlier malformed frame (module cursor is reset)', () => {
    expect(decodeTasks(bytes('81a3636d')).rejects[0]!.code).toBe(BrokerErrorCode.MALFORMED)
    expect(decodeTasks(encodeTask({ cmd: 10, uid: 'a' })).tasks).toEqual([expect.objectContaining({ cmd: 10, uid: 'a' })])
  })
})

describe('decodeEgress edges', () => {
  it('keys a cmd does not use are ignored, even when ill-typed', () => {
    const frame = cat(
      bytes('84'),
      packValue('cmd'),
      packValue(240),
      packValue('node_id'),
      packValue(1),
      packValue('conn_id'),
      packValue(2),
      packValue('body'),
      packValue('not bin'),
    )
    expect(decodeEgress(frame)).toEqual({ messages: [{ cmd: 240, nodeId: 1, connId: 2 }], rejects: [] })
  })

  it('a bad 230 row is reported with its index; an ill-typed rows key followed by a good one: last wins', () => {
    const bad = encodeEgress({ cmd: 230, rows: [{ uids: [1], body: new Uint8Array(0) }] })
    const rows = packValue([
      { uids: [1], body: new Uint8Array(0) },
      { uids: [2], body: new Uint8Array(0), userdata: 1.5 },
    ])
    const frame = cat(bytes('82'), packValue('cmd'), packValue(230), packValue('rows'), rows)
    expect(decodeEgress(frame).rejects[0]).toMatchObject({ code: BrokerErrorCode.WRONG_TYPE, key: 'rows[1].userdata' })
    // bad = 82 | a3 'cmd' | cc e6 | a4 'rows' [...]: its rows entry starts at byte 7
    expect(hex(bad.subarray(0, 8))).toBe('82a3636d64cce6a4')
    const fixed = cat(bytes('83'), packValue('cmd'), packValue(230), packValue('rows'), rows, bad.subarray(7))
    expect(decodeEgress(fixed)).toEqual({ messages: [{ cmd: 230, rows: [{ uids: [1], body: new Uint8Array(0) }] }], rejects: [] })
  })
})

describe('generic reader', () => {
  it('rejects what is not one well-formed value', () => {
    for (const h of ['', 'c1', '0000', '92 01', 'd40100', 'c70201ffff', 'a2ff', 'dc0002 01']) {
      expect(() => unpackValue(bytes(h)), h).toThrow(expect.objectContaining({ code: BrokerErrorCode.MALFORMED }))
    }
  })

  it('deep nesting is MALFORMED, not a stack overflow', () => {
    expect(() => unpackValue(cat(new Uint8Array(100_000).fill(0x91), bytes('c0')))).toThrow(expect.objectContaining({ code: BrokerErrorCode.MALFORMED }))
    const cyclic: unknown[] = []
    cyclic.push(cyclic)
    expect(() => packValue(cyclic)).toThrow(expect.objectContaining(ENCODE_FAILED))
  })

  it('maps: non-str keys give a Map; __proto__ is an own key, never the prototype', () => {
    expect(
      unpackValue(
        packValue(
          new Map<unknown, unknown>([
            ['a', 1],
            [2, 'b'],
          ]),
        ),
      ),
    ).toEqual(
      new Map<unknown, unknown>([
        ['a', 1],
        [2, 'b'],
      ]),
    )
    const o = unpackValue(cat(bytes('81'), packValue('__proto__'), packValue({ polluted: true }))) as Record<string, unknown>
    expect(Object.getPrototypeOf(o)).toBe(Object.prototype)
    expect(Object.keys(o)).toEqual(['__proto__'])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('strings: a leading BOM is kept, lone surrogates become U+FFFD, long strings round-trip', () => {
    expect(unpackValue(packValue('\ufeffx'))).toBe('\ufeffx')
    expect(unpackValue(packValue('a\ud800b'))).toBe('a\ufffdb')
    const long = 'ü🐉'.repeat(5000)
    expect(unpackValue(packValue(long))).toBe(long)
    expect(hex(packValue('x'.repeat(31))).slice(0, 2)).toBe('bf')
    expect(hex(packValue('x'.repeat(32))).slice(0, 4)).toBe('d920')
    expect(hex(packValue('x'.repeat(256))).slice(0, 6)).toBe('da0100')
    expect(hex(packValue('x'.repeat(65536))).slice(0, 10)).toBe('db00010000')
  })

  it('unsupported values throw ENCODE_FAILED', () => {
    for (const v of [() => 1, Symbol('x'), new Date(), new Set([1])]) expect(() => packValue(v)).toThrow(expect.objectContaining(ENCODE_FAILED))
  })

  it('round trip of application data (property, 10,000 runs)', () => {
    const leaf = fc.oneof(
      fc.integer(),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }).map((v) => (v >= -(2n ** 53n - 1n) && v <= 2n ** 53n - 1n ? Number(v) : v)),
      fc.double({ noDefaultInfinity: false }).filter((x) => !Object.is(x, -0) && !Number.isSafeInteger(x)),
      fc.string({ maxLength: 20 }),
      fc.uint8Array({ maxLength: 20 }),
      fc.boolean(),
      fc.constant(null),
    )
    const value = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 6 }), tie('v'), { maxKeys: 4 })),
    })).v
    fc.assert(
      fc.property(value, (v) => {
        expect(unpackValue(packValue(v))).toEqual(v)
      }),
      { numRuns: 10_000 },
    )
  })
})

describe('msgpack body codec', () => {
  const codec = msgpackBodyCodec

  it('request: cmd int|str, sn optional (nil = absent), data any (nil = null), unknown keys ignored', () => {
    expect(codec.name).toBe('msgpack')
    expect(codec.decodeRequest(packValue({ cmd: 'a', sn: null, data: null, x: 1 }))).toEqual({ cmd: 'a', data: null })
    expect(codec.decodeRequest(packValue({ cmd: 5 }))).toEqual({ cmd: 5 })
    expect(codec.decodeRequest(packValue({ data: 1, cmd: 5, sn: 2n ** 60n }))).toEqual({ cmd: 5, sn: 2n ** 60n, data: 1 })
    expect(codec.decodeRequest(cat(bytes('82'), packValue('cmd'), packValue(1), packValue('cmd'), packValue('b')))).toEqual({ cmd: 'b' })
  })

  it('request bins are copies, not views into the body', () => {
    const body = packValue({ cmd: 1, data: new Uint8Array([1, 2]) })
    const req = codec.decodeRequest(body)
    body[body.length - 1] = 9
    expect(req.data).toEqual(new Uint8Array([1, 2]))
  })

  it('small bin copies share a slab without overlapping; large ones get their own buffer', () => {
    const reqs = Array.from({ length: 200 }, (_, i) => codec.decodeRequest(packValue({ cmd: 1, data: new Uint8Array(100).fill(i) })))
    for (const r of reqs) (r.data as Uint8Array)[0] = 255
    reqs.forEach((r, i) => {
      const d = r.data as Uint8Array
      expect(d.length).toBe(100)
      expect(d[0]).toBe(255)
      expect(d.subarray(1).every((x) => x === i)).toBe(true)
    })
    const big = codec.decodeRequest(packValue({ cmd: 1, data: new Uint8Array(5000).fill(7) })).data as Uint8Array
    expect(big.byteOffset).toBe(0)
    expect(big.buffer.byteLength).toBe(5000)
    expect(codec.decodeRequest(packValue({ cmd: 1, data: new Uint8Array(0) })).data).toEqual(new Uint8Array(0))
  })

  it('undecodable requests throw BODY_UNDECODABLE', () => {
    for (const b of [
      packValue([1]),
      packValue({ sn: 1 }),
      packValue({ cmd: null }),
      packValue({ cmd: 1.5 }),
      packValue({ cmd: true }),
      packValue({ cmd: 1, sn: 'x' }),
      cat(bytes('81'), packValue('cmd'), bytes('cb4000000000000000')), // cmd 2.0: a float
      cat(bytes('82'), packValue('cmd'), packValue(1), packValue('sn'), bytes('cb4000000000000000')),
      cat(packValue({ cmd: 1 }), bytes('00')),
      new Uint8Array(0),
    ]) {
      expect(() => codec.decodeRequest(b), hex(b)).toThrow(expect.objectContaining(UNDECODABLE))
    }
  })

  it('peekRequest: best effort on damaged bodies', () => {
    const full = packValue({ cmd: 'battle', sn: 12, data: { x: 'y'.repeat(50) } })
    expect(codec.peekRequest(full.subarray(0, full.length - 10))).toEqual({ cmd: 'battle', sn: 12 })
    expect(codec.peekRequest(cat(bytes('83'), packValue('cmd'), bytes('cb4000000000000000'), packValue('sn'), packValue(3)))).toEqual({ sn: 3 })
    expect(codec.peekRequest(bytes('c1'))).toEqual({})
    expect(codec.peekRequest(undefined as unknown as Uint8Array)).toEqual({})
  })

  it('replies and pushes round-trip; a reply without cmd/sn (-10004) leaves them out', () => {
    const r = { cmd: 'a', sn: 2 ** 40, ret: -10001, data: { n: 2n ** 63n - 1n, b: new Uint8Array([1]) } }
    expect(codec.decodeReply(codec.encodeReply(r))).toEqual(r)
    expect(hex(codec.encodeReply({ ret: -10004 }))).toBe(hex(packValue({ ret: -10004 })))
    expect(codec.decodeReply(codec.encodeReply({ ret: -10004 }))).toEqual({ ret: -10004 })
    expect(codec.decodeReply(codec.encodePush({ cmd: 7, data: [1] }))).toEqual({ cmd: 7, data: [1] })
    expect(hex(codec.encodePush({ cmd: 'x' }))).toBe(hex(packValue({ cmd: 'x' })))
    expect(() => codec.encodeReply({ cmd: 'a', ret: 1.5 })).toThrow(expect.objectContaining(ENCODE_FAILED))
    expect(() => codec.encodeReply({ cmd: 1.5, ret: 0 })).toThrow(expect.objectContaining(ENCODE_FAILED))
    // every sn a request can carry is echoed exactly: int64 and uint64 (protocol §4)
    for (const sn of [2n ** 64n - 1n, 2n ** 63n, -(2n ** 63n)])
      expect(codec.decodeReply(codec.encodeReply({ cmd: 'a', sn, ret: 0 }))).toEqual({ cmd: 'a', sn, ret: 0 })
    expect(() => codec.encodeReply({ cmd: 'a', sn: 2n ** 64n, ret: 0 })).toThrow(expect.objectContaining(ENCODE_FAILED))
    expect(() => codec.encodePush({ cmd: 'a', data: () => 1 })).toThrow(expect.objectContaining(ENCODE_FAILED))
    expect(() => codec.decodeReply(packValue({ data: 1 }))).toThrow(expect.objectContaining(UNDECODABLE))
  })

  it('request round trip (property, 10,000 runs)', () => {
    const cmd = fc.oneof(fc.integer(), fc.string({ maxLength: 12 }))
    const sn = fc.option(fc.oneof(fc.integer(), fc.bigInt({ min: 2n ** 53n, max: 2n ** 63n - 1n })), { nil: undefined })
    fc.assert(
      fc.property(cmd, sn, fc.jsonValue({ maxDepth: 2 }), (c, s, data) => {
        const body = packValue(s === undefined ? { cmd: c, data } : { cmd: c, sn: s, data })
        const req = codec.decodeRequest(body)
        expect(req.cmd).toBe(c)
        expect(req.sn).toBe(s)
        // -0 is an integral number: it goes as the int 0
        expect(req.data).toEqual(JSON.parse(JSON.stringify(data), (_k, v: unknown) => (Object.is(v, -0) ? 0 : v)))
        expect(codec.peekRequest(body)).toEqual(s === undefined ? { cmd: c } : { cmd: c, sn: s })
      }),
      { numRuns: 10_000 },
    )
  })
})

describe('decodeTasks ranges', () => {
  it('reports the byte range of every valid task, so its original bytes can be forwarded', async () => {
    const { decodeTasks, encodeTasks, packValue } = await import('../src/codec/index.ts')
    const tasks = [
      { cmd: 10, uid: 2 ** 40 + 1, body: new Uint8Array([1, 2, 3]) },
      { cmd: 15, uid: 'p', nodeId: 3, connId: 4 },
    ]
    const good = encodeTasks(tasks)
    // splice a bad element between the two good ones: [t0, {cmd: 1.5}, t1]
    const t0 = encodeTasks([tasks[0]!]).subarray(1)
    const t1 = encodeTasks([tasks[1]!]).subarray(1)
    const bad = packValue({ cmd: 1.5 })
    const frame = new Uint8Array([0x93, ...t0, ...bad, ...t1])
    const out = decodeTasks(frame, { ranges: true })
    expect(out.tasks).toHaveLength(2)
    expect(out.rejects).toHaveLength(1)
    const r = out.ranges!
    expect(r).toHaveLength(4)
    expect(Buffer.from(frame.subarray(r[0], r[1]))).toEqual(Buffer.from(t0))
    expect(Buffer.from(frame.subarray(r[2], r[3]))).toEqual(Buffer.from(t1))
    // the raw maps re-assembled into an array decode to the same tasks
    const again = decodeTasks(new Uint8Array([0x92, ...frame.subarray(r[0], r[1]), ...frame.subarray(r[2], r[3])]))
    expect(again.tasks).toEqual(out.tasks)
    expect(decodeTasks(good, { ranges: true }).ranges).toEqual([1, 1 + t0.length, 1 + t0.length, good.length])
  })
})
