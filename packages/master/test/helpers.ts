/** Shared helpers of the master's tests: a broker DEALER, request bodies, reply decoding. */
import { fileURLToPath } from 'node:url'
import { afterEach } from 'vitest'
import pino from 'pino'
import * as zmq from 'zeromq'
import { startFakeForwarder, type FakeForwarder, type FakeForwarderOptions } from '@peony/fake-forwarder'
import { createMaster, type Master, type MasterInput } from '../src/index.ts'
import { type EgressMessage, encodeTaskFrames, msgpackBodyCodec, packValue, type Task } from '@peony/protocol'

export const TEST_APP = fileURLToPath(new URL('./fixtures/test-app.ts', import.meta.url))

/** A client request task for body cmd `cmd` with `data`. */
export function req(uid: number | bigint | string | undefined, cmd: string, data: unknown, extra: Partial<Task> = {}, sn: number | bigint = 1): Task {
  return { cmd: 10, uid, nodeId: 7, connId: 1000 + (typeof uid === 'number' ? uid : 0), tag: 3, body: packValue({ cmd, sn, data }), ...extra }
}

/** A raw broker: one DEALER, tasks sent in frames of up to 64. */
export class TestBroker {
  readonly sock = new zmq.Dealer({ sendHighWaterMark: 0 })
  readonly endpoint: string
  constructor(endpoint: string) {
    this.endpoint = endpoint
    this.sock.connect(endpoint)
  }
  async send(tasks: Task[], perFrame = 64): Promise<void> {
    for (let i = 0; i < tasks.length; i += perFrame) {
      for (const f of encodeTaskFrames(tasks.slice(i, i + perFrame))) await this.sock.send(f)
    }
  }
  close(): void {
    this.sock.linger = 0
    this.sock.close()
  }
}

/** Decoded reply of a 220 egress message. */
export interface Reply {
  ret: number
  body: { cmd?: unknown; sn?: unknown; ret: number; data?: Record<string, unknown> }
  msg: EgressMessage
}

export function replies(msgs: readonly EgressMessage[]): Reply[] {
  const out: Reply[] = []
  for (const m of msgs) {
    if (m.cmd !== 220) continue
    out.push({ ret: m.ret ?? 0, body: msgpackBodyCodec.decodeReply(m.body) as Reply['body'], msg: m })
  }
  return out
}

/** A running master with the test app, the fake forwarder it sends to, and a broker connected to it. */
export interface Booted {
  master: Master
  fwd: FakeForwarder
  broker: TestBroker
}

/**
 * For a test file: registers the clean-up (broker, master, forwarder) after each test and returns
 * `boot(options)`, which starts a master with the test app on a free intake port, egress to a new
 * fake forwarder, 2 workers and silent logs unless `options` say otherwise.
 */
export function masterFixture(defaults: Partial<MasterInput> = {}): (options?: Partial<MasterInput>, forwarder?: FakeForwarderOptions) => Promise<Booted> {
  const cleanups: (() => Promise<void>)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })
  return async (options = {}, forwarder = {}) => {
    const fwd = await startFakeForwarder(forwarder)
    cleanups.push(() => fwd.close())
    const master = createMaster({
      serverId: 'test',
      appModule: TEST_APP,
      intakeEndpoints: ['tcp://127.0.0.1:0'],
      forwarderEndpoint: fwd.endpoint,
      groups: [{ id: 1, count: 2 }],
      logger: pino({ level: process.env.PEONY_LOG_LEVEL ?? 'silent' }),
      ...defaults,
      ...options,
    })
    cleanups.push(() => master.stop())
    const { intakeEndpoints } = await master.start()
    const broker = new TestBroker(intakeEndpoints[0]!)
    cleanups.push(async () => broker.close())
    return { master, fwd, broker }
  }
}
