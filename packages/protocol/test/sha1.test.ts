/**
 * The pure-TS SHA-1 behind server choice equals node:crypto's, byte for byte, and so does every
 * server score built on it (the same digest of utf8(server id) ‖ 0x00 ‖ key bytes as before).
 */
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { chooseServer, routingKeyBytes, serverScore, type Task } from '@peony/protocol'
import { sha1 } from '../src/sha1.ts'

const nodeSha1 = (b: Uint8Array): Buffer => createHash('sha1').update(b).digest()
const nodeScore = (id: string, key: Uint8Array): bigint =>
  createHash('sha1')
    .update(id, 'utf8')
    .update(Buffer.from([0]))
    .update(key)
    .digest()
    .readBigUInt64BE(0)

describe('sha1', () => {
  it('equals node:crypto at every length across the padding boundaries (0–300 bytes)', () => {
    for (let n = 0; n <= 300; n++) {
      const b = new Uint8Array(n)
      for (let i = 0; i < n; i++) b[i] = (i * 131 + n * 7) & 0xff
      expect(Buffer.from(sha1(b)).toString('hex'), `length ${n}`).toBe(nodeSha1(b).toString('hex'))
    }
  })

  it('equals node:crypto for random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2_000 }), (b) => {
        expect(Buffer.from(sha1(b)).equals(nodeSha1(b))).toBe(true)
      }),
      { numRuns: 5_000 },
    )
  })

  it('the standard vectors', () => {
    const hex = (s: string): string => Buffer.from(sha1(new TextEncoder().encode(s))).toString('hex')
    expect(hex('')).toBe('da39a3ee5e6b4b0d3255bfef95601890afd80709')
    expect(hex('abc')).toBe('a9993e364706816aba3e25717850c26c9cd0d89d')
    expect(hex('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')).toBe('84983e441c3bd26ebaae4aa1f95129e5e54670f1')
  })
})

describe('serverScore and chooseServer against node:crypto', () => {
  const task = fc.oneof(
    fc.record({
      cmd: fc.constant(10),
      uid: fc.oneof(fc.integer({ min: 1 }), fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }), fc.string({ minLength: 1, maxLength: 40, unit: 'binary' })),
    }),
    fc.record({
      cmd: fc.constant(10),
      nodeId: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      connId: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    }),
  ) as fc.Arbitrary<Task>
  const ids = fc.uniqueArray(fc.string({ maxLength: 30, unit: 'binary' }), { minLength: 1, maxLength: 8 })

  it('every score and every choice is the one node:crypto gives', () => {
    fc.assert(
      fc.property(ids, task, (serverIds, t) => {
        const key = routingKeyBytes(t)!
        let best = serverIds[0]!
        let bestScore = nodeScore(best, key)
        for (const id of serverIds) {
          const s = nodeScore(id, key)
          expect(serverScore(id, key)).toBe(s)
          if (s > bestScore || (s === bestScore && id < best)) {
            best = id
            bestScore = s
          }
        }
        expect(chooseServer(serverIds, t)).toBe(best)
      }),
      { numRuns: 5_000 },
    )
  })

  it('routing key bytes are a plain Uint8Array (no Buffer)', () => {
    for (const t of [
      { cmd: 10, uid: 'p' },
      { cmd: 10, uid: 7 },
      { cmd: 10, nodeId: 1, connId: 2 },
    ] as Task[]) {
      const k = routingKeyBytes(t)!
      expect(Object.getPrototypeOf(k)).toBe(Uint8Array.prototype)
    }
    expect(() => routingKeyBytes({ cmd: 10, nodeId: 2 ** 31, connId: 1 })).toThrow(RangeError)
  })
})
