/**
 * Kept for compatibility: `@peony/broker-client`, `./core` and `./codec` re-export the protocol
 * (now `@peony/protocol`) and `LogLimiter` (now `@peony/log-limiter`), the very same values, so
 * brokers and older code that import them from here change nothing.
 */
import { describe, expect, it } from 'vitest'
import * as main from '@peony/broker-client'
import * as codec from '@peony/broker-client/codec'
import * as core from '@peony/broker-client/core'
import * as limiter from '@peony/log-limiter'
import * as protocol from '@peony/protocol'

const CORE = [
  'TaskCmd',
  'EgressCmd',
  'SpecialUid',
  'ReplyCode',
  'Defaults',
  'Limits',
  'PeonyError',
  'BrokerErrorCode',
  'isPeonyError',
  'toPeonyError',
  'routingKey',
  'routingHash',
  'shardOf',
  'hasUid',
] as const
const SERVER_CHOICE = ['chooseServer', 'serverScore', 'routingKeyBytes'] as const
const CODEC = [
  'decodeTasks',
  'encodeTask',
  'encodeTasks',
  'encodeTaskFrames',
  'decodeEgress',
  'decodeAck',
  'encodeEgress',
  'encodeEgressBatch',
  'encodeAck',
  'writeEgress',
  'msgpackBodyCodec',
  'packValue',
  'unpackValue',
  'MsgpackWriter',
] as const
const LIMITER = ['LogLimiter', 'SUPPRESSED_MSG'] as const

describe('re-exports kept for compatibility', () => {
  it('the main entry: the protocol, server choice, LogLimiter, and the sockets', () => {
    for (const k of [...CORE, ...SERVER_CHOICE]) expect(main[k], k).toBe(protocol[k])
    for (const k of LIMITER) expect(main[k], k).toBe(limiter[k])
    expect(Object.keys(main).sort()).toEqual([...CORE, ...SERVER_CHOICE, ...LIMITER, 'createIntakeServer', 'createBrokerClient', 'createEgressSender'].sort())
  })

  it('./core: the protocol without server choice, and LogLimiter', () => {
    for (const k of CORE) expect(core[k], k).toBe(protocol[k])
    for (const k of LIMITER) expect(core[k], k).toBe(limiter[k])
    expect(Object.keys(core).sort()).toEqual([...CORE, ...LIMITER].sort())
  })

  it('./codec: the codec', () => {
    for (const k of CODEC) expect(codec[k], k).toBe(protocol[k])
    expect(Object.keys(codec).sort()).toEqual([...CODEC].sort())
  })
})
