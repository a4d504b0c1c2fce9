import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { chooseServer, routingKeyBytes, serverScore } from '../src/server-choice.ts'
import type { Task } from '../src/task.ts'

interface Vector {
  servers: string[]
  key: { kind: 'int'; uid: string } | { kind: 'str'; uid: string } | { kind: 'conn'; node_id: string; conn_id: string }
  keyHex: string
  scores: Record<string, string>
  chosen: string
}

const vectors = (
  JSON.parse(readFileSync(new URL('./fixtures/server-choice-vectors.json', import.meta.url), 'utf8')) as {
    vectors: Vector[]
  }
).vectors

/** An int64 the way Task holds it: a number when safe, a bigint beyond. */
function int64(s: string): number | bigint {
  const b = BigInt(s)
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b
}

function taskOf(key: Vector['key']): Task[] {
  switch (key.kind) {
    case 'int':
      // Both in-memory forms of an int uid must give the same bytes.
      return [
        { cmd: 10, uid: int64(key.uid) },
        { cmd: 10, uid: BigInt(key.uid) },
      ]
    case 'str':
      return [{ cmd: 10, uid: key.uid }]
    case 'conn':
      return [
        { cmd: 10, nodeId: Number(key.node_id), connId: int64(key.conn_id) },
        { cmd: 10, nodeId: Number(key.node_id), connId: BigInt(key.conn_id) },
      ]
  }
}

describe('server choice (protocol §1.3) against golden vectors from Python hashlib', () => {
  it('has enough vectors, covering every key kind', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(20)
    for (const kind of ['int', 'str', 'conn']) expect(vectors.some((v) => v.key.kind === kind)).toBe(true)
    expect(vectors.some((v) => v.key.kind === 'int' && v.key.uid === String(2n ** 63n - 1n))).toBe(true)
    expect(vectors.some((v) => v.key.kind === 'int' && v.key.uid === String(2n ** 40n))).toBe(true)
  })

  it.each(vectors.map((v, i) => [i, v] as const))('vector %i: key bytes, scores and choice match', (_i, v) => {
    for (const task of taskOf(v.key)) {
      const kb = routingKeyBytes(task)
      expect(kb).toBeDefined()
      expect(Buffer.from(kb as Uint8Array).toString('hex')).toBe(v.keyHex)
      for (const id of v.servers) expect(serverScore(id, kb as Uint8Array).toString()).toBe(v.scores[id])
      expect(chooseServer(v.servers, task)).toBe(v.chosen)
    }
  })
})

describe('server choice rules', () => {
  it('the int 5 and the str "5" are different keys', () => {
    const a = routingKeyBytes({ cmd: 10, uid: 5 })
    const b = routingKeyBytes({ cmd: 10, uid: '5' })
    expect(Buffer.from(a as Uint8Array).equals(Buffer.from(b as Uint8Array))).toBe(false)
  })

  it('uid wins over the connection; 0 and "" count as no uid', () => {
    const withUid = routingKeyBytes({ cmd: 10, uid: 7, nodeId: 1, connId: 2 })
    expect((withUid as Uint8Array)[0]).toBe(0x69)
    for (const uid of [0, '', 0n, undefined]) {
      const kb = routingKeyBytes({ cmd: 10, uid, nodeId: 1, connId: 2 })
      expect((kb as Uint8Array)[0]).toBe(0x63)
    }
  })

  it('a task with no routing key goes to the smallest server id', () => {
    expect(routingKeyBytes({ cmd: 10 })).toBeUndefined()
    expect(routingKeyBytes({ cmd: 10, nodeId: 3 })).toBeUndefined()
    expect(routingKeyBytes({ cmd: 10, connId: 3 })).toBeUndefined()
    expect(chooseServer(['m', 'b', 'z'], { cmd: 10 })).toBe('b')
    expect(chooseServer(['m', 'b', 'z'], { cmd: 10, uid: '' })).toBe('b')
  })

  it('the choice does not depend on the order of the server list, and is the highest score', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 6 }),
        fc.oneof(
          fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }).map((uid): Task => ({ cmd: 10, uid })),
          fc.string({ minLength: 1, maxLength: 20 }).map((uid): Task => ({ cmd: 10, uid })),
          fc
            .tuple(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }))
            .map(([nodeId, connId]): Task => ({ cmd: 10, nodeId, connId })),
        ),
        (ids, task) => {
          const chosen = chooseServer(ids, task)
          expect(chooseServer([...ids].reverse(), task)).toBe(chosen)
          const kb = routingKeyBytes(task) as Uint8Array
          const best = ids.reduce((a, b) => {
            const sa = serverScore(a, kb)
            const sb = serverScore(b, kb)
            return sb > sa || (sb === sa && b < a) ? b : a
          })
          expect(chosen).toBe(best)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('spreads keys over servers', () => {
    const ids = ['a', 'b', 'c']
    const counts = new Map<string, number>()
    for (let uid = 1; uid <= 3000; uid++) {
      const s = chooseServer(ids, { cmd: 10, uid })
      counts.set(s, (counts.get(s) ?? 0) + 1)
    }
    for (const id of ids) expect(counts.get(id) ?? 0).toBeGreaterThan(800)
  })

  it('rejects an empty server list and out-of-range keys', () => {
    expect(() => chooseServer([], { cmd: 10, uid: 1 })).toThrow(RangeError)
    expect(() => chooseServer(['a', 'b'], { cmd: 10, uid: 2n ** 63n })).toThrow(RangeError)
    expect(chooseServer(['only'], { cmd: 10, uid: 7 })).toBe('only')
    expect(() => routingKeyBytes({ cmd: 10, uid: 2n ** 63n })).toThrow(RangeError)
    expect(() => routingKeyBytes({ cmd: 10, uid: 1.5 })).toThrow(RangeError)
  })
})
