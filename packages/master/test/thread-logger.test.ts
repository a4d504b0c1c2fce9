import { describe, expect, it } from 'vitest'
import { serialize } from '../src/thread/thread-logger.ts'

describe('thread logger', () => {
  it('writes an error with its cause chain, and a chain that loops once, not until the stack overflows', () => {
    const driver = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    const err = Object.assign(new Error('the storage is not reachable', { cause: driver }), { code: 'PEONY_STORAGE_UNAVAILABLE' })
    const line = JSON.parse(serialize({ err, n: 2n ** 64n })) as { err: { code: string; cause: { code: string; message: string } }; n: string }
    expect(line.err.code).toBe('PEONY_STORAGE_UNAVAILABLE')
    expect(line.err.cause).toMatchObject({ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' })
    expect(line.n).toBe('18446744073709551616')
    const loop = new Error('a')
    const b = new Error('b', { cause: loop })
    ;(loop as { cause?: unknown }).cause = b
    const looped = JSON.parse(serialize({ err: loop })) as { err: { message: string; cause: { message: string; cause: unknown } } }
    expect(looped.err.cause.message).toBe('b')
    expect(looped.err.cause.cause).toBe('[circular]')
  })
})
