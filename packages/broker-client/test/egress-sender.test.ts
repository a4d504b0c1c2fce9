import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import * as zmq from 'zeromq'
import { tempDir, uniqAddress, waitFor } from '@peony/test-utils'
import { startFakeForwarder } from '@peony/fake-forwarder'
import type { FakeForwarder, FakeForwarderOptions } from '@peony/fake-forwarder'
import { createEgressSender } from '../src/egress-sender.ts'
import type { EgressDropReason, EgressSender, EgressSenderOptions } from '../src/egress-sender.ts'
import { BrokerErrorCode, type EgressMessage, encodeEgress } from '@peony/protocol'

const cleanup: (() => unknown)[] = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

function sender(options: EgressSenderOptions): EgressSender {
  const s = createEgressSender(options)
  cleanup.push(() => s.close())
  return s
}

async function forwarder(options: FakeForwarderOptions): Promise<FakeForwarder> {
  const f = await startFakeForwarder(options)
  cleanup.push(() => f.close())
  return f
}

/** A 220 whose conn_id numbers it, so order and completeness are easy to check. */
const msg = (i: number, bodyBytes = 8): EgressMessage => ({ cmd: 220, nodeId: 1, connId: i, body: new Uint8Array(bodyBytes).fill(i & 0xff) })
const ids = (f: FakeForwarder): number[] => f.messages.map((m) => Number((m as { connId: number }).connId))
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

describe('egress sender without a forwarder', () => {
  it('buffers up to bufferMax, counts the overflow, and close resolves', async () => {
    const dropped: [number, EgressDropReason][] = []
    const s = createEgressSender({
      endpoint: await uniqAddress('tcp'),
      ack: false,
      bufferMax: 10,
      onOverflow: (m, reason) => dropped.push([Number((m as { connId: number }).connId), reason]),
    })
    for (let i = 1; i <= 15; i++) s.send(msg(i))
    expect(s.stats()).toMatchObject({ buffered: 10, overflow: 5, sent: 0 })
    expect(dropped).toEqual(range(11, 15).map((i) => [i, 'overflow']))
    expect(s.connected).toBe(false)
    await s.close({ lingerMs: 50 })
    expect(s.status).toBe('closed')
    expect(s.stats().discarded).toBe(10)
    expect(() => s.send(msg(1))).toThrow(expect.objectContaining({ code: BrokerErrorCode.NOT_OPEN }))
  })

  it('with ack, a dropped message takes no seq, so the forwarder sees no gap', async () => {
    const ep = await uniqAddress('tcp')
    const s = sender({ endpoint: ep, ack: true, bufferMax: 10 })
    for (let i = 1; i <= 15; i++) s.send(msg(i))
    expect(s.stats()).toMatchObject({ overflow: 5, evicted: 0, buffered: 10 })
    const f = await forwarder({ endpoint: ep, ack: true })
    await f.until(10)
    expect(ids(f)).toEqual(range(1, 10))
    expect(f.messages.map((m) => m.seq)).toEqual(range(1, 10))
    expect(f.messages.every((m) => m.sender === s.sender)).toBe(true)
    await waitFor(() => s.stats().acked === 10)
    expect(s.stats().inFlightUnacked).toBe(0)
  })

  it('closes and lets the process exit: with frames stuck in ZeroMQ, and with no forwarder at all', async () => {
    // A peer that accepts the connection but never reads, so frames pile up inside ZeroMQ.
    const ep = await uniqAddress('tcp')
    const sink = new zmq.Router({ receiveHighWaterMark: 1, linger: 0 })
    await sink.bind(ep)
    cleanup.push(() => sink.close())
    const nowhere = await uniqAddress('tcp')
    const src = fileURLToPath(new URL('../src/egress-sender.ts', import.meta.url))
    const script = join(tempDir(), 'child.mts')
    writeFileSync(
      script,
      `import { createEgressSender } from ${JSON.stringify(src)}
const stuck = createEgressSender({ endpoint: ${JSON.stringify(ep)}, ack: false, bufferMax: 100000 })
const away = createEgressSender({ endpoint: ${JSON.stringify(nowhere)}, ack: true, bufferMax: 100000 })
for (let i = 1; i <= 5000; i++) {
  stuck.send({ cmd: 220, nodeId: 1, connId: i, body: new Uint8Array(500) })
  away.send({ cmd: 220, nodeId: 1, connId: i, body: new Uint8Array(10) })
}
await new Promise((r) => setTimeout(r, 300))
await Promise.all([stuck.close({ lingerMs: 200 }), away.close({ lingerMs: 200 })])
console.log('closed', JSON.stringify([stuck.stats(), away.stats()]))
`,
    )
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const code = await new Promise<number | null>((resolve) => {
      // A hang guard, not a timing assertion.
      const t = setTimeout(() => child.kill('SIGKILL'), 20_000)
      child.on('exit', (c) => {
        clearTimeout(t)
        resolve(c)
      })
    })
    expect(out).toContain('closed')
    expect(code).toBe(0)
    const [stuck, away] = JSON.parse(out.slice(out.indexOf('['), out.lastIndexOf(']') + 1)) as {
      sent: number
      buffered: number
      discarded: number
    }[]
    // Frames really went into ZeroMQ towards a peer that never reads them; the other sender never sent.
    expect(stuck?.sent).toBe(5000)
    expect(away).toMatchObject({ sent: 0, discarded: 5000 })
  }, 30_000)
})

describe('egress sender with a forwarder', () => {
  it('coalesces one turn into few frames, in order, without sender/seq when ack is off', async () => {
    const f = await forwarder({})
    const s = sender({ endpoint: f.endpoint, ack: false, bufferMax: 10_000 })
    await waitFor(() => s.connected)
    for (let i = 1; i <= 500; i++) s.send(msg(i))
    await f.until(500)
    expect(ids(f)).toEqual(range(1, 500))
    expect(f.frames).toBeLessThanOrEqual(2)
    expect(f.messages[0]?.seq).toBeUndefined()
    expect(f.messages[0]?.sender).toBeUndefined()
    expect(s.stats()).toMatchObject({ sent: 500, buffered: 0, inFlightUnacked: 0 })
  })

  it('sendEncoded queues maps encoded elsewhere as they are, in order with send(); overflow still reports the message; ack refuses it', async () => {
    const f = await forwarder({})
    const s = sender({ endpoint: f.endpoint, ack: false, bufferMax: 10_000 })
    await waitFor(() => s.connected)
    for (let i = 1; i <= 300; i++) {
      if (i % 2 === 0) s.sendEncoded(encodeEgress(msg(i)))
      else s.send(msg(i))
    }
    await f.until(300)
    expect(ids(f)).toEqual(range(1, 300))
    expect(f.messages[1]).toEqual(msg(2))
    const dropped: number[] = []
    const full = createEgressSender({
      endpoint: await uniqAddress('tcp'),
      ack: false,
      bufferMax: 1,
      onOverflow: (m) => dropped.push(Number((m as { connId: number }).connId)),
    })
    cleanup.push(() => full.close({ lingerMs: 0 }))
    full.sendEncoded(encodeEgress(msg(1)))
    expect(full.sendEncoded(encodeEgress(msg(2)))).toBe(false)
    expect(dropped).toEqual([2])
    const acked = sender({ endpoint: f.endpoint, ack: true, bufferMax: 10 })
    expect(() => acked.sendEncoded(encodeEgress(msg(1)))).toThrow(TypeError)
  })

  it('splits frames under maxFrameBytes and refuses a single message that cannot fit', async () => {
    const f = await forwarder({ maxFrameBytes: 600 })
    const s = sender({ endpoint: f.endpoint, ack: true, bufferMax: 10_000, maxFrameBytes: 600 })
    for (let i = 1; i <= 100; i++) s.send(msg(i, 50))
    await f.until(100)
    expect(f.rejects).toEqual([])
    expect(f.frames).toBeGreaterThan(8)
    expect(ids(f)).toEqual(range(1, 100))
    expect(() => s.send(msg(101, 1000))).toThrow(expect.objectContaining({ code: BrokerErrorCode.FRAME_TOO_LARGE }))
    expect(() => s.send({ cmd: 220, nodeId: 2 ** 40, connId: 1, body: new Uint8Array(1) })).toThrow(
      expect.objectContaining({ code: BrokerErrorCode.ENCODE_FAILED }),
    )
    // A refused message took no seq.
    s.send(msg(102))
    await f.until(101)
    expect(f.messages.at(-1)?.seq).toBe(101)
  })

  it('works with a forwarder that never acknowledges: every message delivered in order, the oldest sent ones evicted', async () => {
    const f = await forwarder({ ack: false })
    const dropped: EgressDropReason[] = []
    const s = sender({ endpoint: f.endpoint, ack: true, bufferMax: 50, onOverflow: (_m, r) => dropped.push(r) })
    // Until the first handshake nothing is sent, so nothing could be evicted: start once connected.
    await waitFor(() => s.connected)
    for (let round = 0; round < 10; round++) {
      for (let i = 1; i <= 30; i++) s.send(msg(round * 30 + i))
      await new Promise((r) => setTimeout(r, 5))
    }
    await f.until(300)
    expect(ids(f)).toEqual(range(1, 300))
    expect(f.messages.map((m) => m.seq)).toEqual(range(1, 300))
    const st = s.stats()
    expect(st.overflow).toBe(0)
    expect(st.acked).toBe(0)
    expect(st.inFlightUnacked).toBeLessThanOrEqual(50)
    expect(st.evicted).toBe(300 - st.inFlightUnacked)
    expect(dropped.every((r) => r === 'evicted')).toBe(true)
    // close does not wait for acks that this forwarder never sends.
    await s.close({ lingerMs: 10_000 })
    expect(s.status).toBe('closed')
  })

  it('an acknowledging forwarder restarted mid-stream: nothing lost, no duplicates delivered, order kept', async () => {
    const f = await forwarder({ ack: true })
    const s = sender({ endpoint: f.endpoint, ack: true, bufferMax: 100_000 })
    await waitFor(() => s.connected)
    const total = 4000
    let next = 1
    const produce = async (upTo: number): Promise<void> => {
      while (next <= upTo) {
        for (let k = 0; k < 50 && next <= upTo; k++) s.send(msg(next++, 32))
        await new Promise((r) => setImmediate(r))
      }
    }
    await produce(1000)
    // The forwarder gets stuck: what follows piles up inside ZeroMQ, and dies with it on the restart.
    f.pause()
    await produce(2000)
    await waitFor(() => s.stats().sent === 2000)
    const restarting = f.restart({ downMs: 150 })
    // Keep producing while it is away.
    await produce(3000)
    await restarting
    await produce(total)
    await f.until(total, 20_000)
    await waitFor(() => s.stats().inFlightUnacked === 0 && s.stats().buffered === 0, { timeoutMs: 10_000 })
    expect(ids(f)).toEqual(range(1, total))
    expect(f.messages.map((m) => m.seq)).toEqual(range(1, total))
    const st = s.stats()
    expect(st.reconnects).toBe(1)
    // At least the frames lost inside the stuck forwarder were sent again.
    expect(st.resent).toBeGreaterThanOrEqual(1000 - f.lateFills)
    expect(st.acked).toBe(total)
    expect(st.overflow + st.evicted).toBe(0)
    expect(f.lateFills).toBe(0)
    expect(f.received).toBe(total + f.duplicates)
  })

  it('re-sends what a dead forwarder held unacknowledged, in order, ahead of newer messages', async () => {
    // Acks only every 10 s: everything sent before the restart is still unacknowledged.
    const f = await forwarder({ ack: true, ackEveryMs: 10_000 })
    const s = sender({ endpoint: f.endpoint, ack: true, bufferMax: 10_000 })
    for (let i = 1; i <= 100; i++) s.send(msg(i))
    await f.until(100)
    await waitFor(() => s.stats().inFlightUnacked === 100)
    await f.restart({ downMs: 50, forgetState: true })
    for (let i = 101; i <= 150; i++) s.send(msg(i))
    // A forwarder that forgot its state delivers the re-sent ones again: 1…100 twice, then 101…150.
    await f.until(250)
    expect(ids(f)).toEqual([...range(1, 100), ...range(1, 150)])
    expect(s.stats().resent).toBe(100)
    expect(s.stats().reconnects).toBe(1)
  })

  it('without ack, a forwarder restart loses at most what was in flight, and order is kept', async () => {
    const f = await forwarder({})
    const s = sender({ endpoint: f.endpoint, ack: false, bufferMax: 100_000 })
    await waitFor(() => s.connected)
    let next = 1
    for (let round = 0; round < 40; round++) {
      for (let k = 0; k < 25; k++) s.send(msg(next++))
      await new Promise((r) => setImmediate(r))
      if (round === 20) await f.restart({ downMs: 100 })
    }
    await waitFor(() => ids(f).at(-1) === next - 1, { timeoutMs: 10_000 })
    const got = ids(f)
    for (let i = 1; i < got.length; i++) expect(got[i]).toBeGreaterThan(got[i - 1] as number)
    expect(s.stats().reconnects).toBe(1)
    expect(s.stats().resent).toBe(0)
  })

  it('works over ipc and inproc too', async () => {
    for (const proto of ['ipc', 'inproc'] as const) {
      const f = await forwarder({ endpoint: await uniqAddress(proto), ack: true })
      const s = sender({ endpoint: f.endpoint, ack: true, bufferMax: 1000 })
      for (let i = 1; i <= 50; i++) s.send(msg(i))
      await f.until(50)
      expect(ids(f)).toEqual(range(1, 50))
      await waitFor(() => s.stats().acked === 50)
    }
  })

  it('validates its options', () => {
    expect(() => createEgressSender({ endpoint: 'x', ack: false, bufferMax: 1 })).toThrow(TypeError)
    expect(() => createEgressSender({ endpoint: 'tcp://127.0.0.1:1', ack: false, bufferMax: 0 })).toThrow(RangeError)
    expect(() => createEgressSender({ endpoint: 'tcp://127.0.0.1:1', bufferMax: 1 } as unknown as EgressSenderOptions)).toThrow(TypeError)
    expect(() => createEgressSender({ endpoint: 'tcp://127.0.0.1:1', ack: true, bufferMax: 1, sender: '' })).toThrow(TypeError)
  })
})
