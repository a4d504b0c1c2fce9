/**
 * The egress thread: owns the DEALER to the forwarder for all workers of this server. Each
 * worker posts its egress batches through its own MessagePort; this thread hands them, in
 * order, to one EgressSender (bounded buffer, overflow counted, optional seq/ack). No
 * application code runs here, so an abrupt worker death never tears down a ZeroMQ socket.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import { createEgressSender } from '@peony/broker-client'
import { LogLimiter } from '@peony/log-limiter'
import { BrokerErrorCode, decodeEgress, type EgressMessage, isPeonyError } from '@peony/protocol'
import { createThreadLogger } from './thread-logger.ts'
import type { EgressBoot, EgressPost, FromEgress, ToEgress } from './messages.ts'
import { framedMaps, unposted } from './egress-journal.ts'

/** A worker's frames were encoded by this server and bounded by its journal: no size limit here. */
const NO_LIMIT = { maxFrameBytes: Number.MAX_SAFE_INTEGER }

const boot = workerData as EgressBoot
const port = parentPort!
const post = (m: FromEgress): void => port.postMessage(m)
// Socket errors and refused messages can repeat for as long as their cause lasts: one line per kind per 10 s.
const log = new LogLimiter(createThreadLogger(boot.logLevel, { thread: 'egress' }))

const sender = createEgressSender({
  endpoint: boot.forwarderEndpoint,
  sender: boot.sender,
  ack: boot.egressAck,
  bufferMax: boot.egressBufferMax,
  maxFrameBytes: boot.maxFrameBytes,
  onError: (err) => {
    log.error(err.code, { err, code: err.code }, err.message)
    port.postMessage({ t: 'stats', stats: { lastError: err.message } } satisfies FromEgress)
  },
})

let refusedLocally = 0
/** Messages sent from a dead worker's journal: produced, not posted before the thread died. */
let salvaged = 0
const ports = new Set<MessagePort>()

/** Hands one message to the sender; one it refuses (unencodable, oversized) is counted and logged. */
function deliver(queue: () => boolean, cmd: number | undefined): void {
  try {
    queue()
  } catch (err) {
    // Unencodable or oversized message (a 230 row with a str uid, say): the sender counted
    // nothing, so count it here; it shows as egress.refusedLocally in the master's stats.
    refusedLocally++
    const code = isPeonyError(err) ? err.code : BrokerErrorCode.ENCODE_FAILED
    log.warn(`refused ${code}`, { err, code, cmd }, 'egress message dropped: it cannot be sent')
  }
}

function send(msg: EgressMessage): void {
  deliver(() => sender.send(msg), msg.cmd)
}

/** A map a worker encoded: queued as it is; with ack (sender and seq go into the map) decoded and re-encoded. */
function sendMap(map: Uint8Array): void {
  if (!boot.egressAck) {
    deliver(() => sender.sendEncoded(map), undefined)
    return
  }
  const msg = decodeEgress(map, NO_LIMIT).messages[0]
  // Cannot happen (this server encoded it); counted like a message the sender refuses.
  if (msg === undefined) refusedLocally++
  else send(msg)
}

/**
 * The open port of each slot, and a closing promise: a respawned worker's port waits until its
 * predecessor's port has closed and its journal was sent, so one player's replies keep their
 * order across a worker's death.
 */
const bySlot = new Map<number, Promise<void>>()

function attach(slot: number, p: MessagePort, journal: SharedArrayBuffer): void {
  ports.add(p)
  const before = bySlot.get(slot)
  let closed!: () => void
  bySlot.set(slot, new Promise<void>((r) => (closed = r)))
  let lastSeq = 0
  let waiting: EgressPost[] | undefined = before === undefined ? undefined : []
  const take = (m: EgressPost): void => {
    if (m.seq > 0) lastSeq = m.seq
    if (m.frame !== undefined) for (const map of framedMaps(m.frame)) sendMap(map)
    else for (const msg of m.batch) send(msg)
  }
  p.on('message', (m: EgressPost) => {
    if (waiting !== undefined) waiting.push(m)
    else take(m)
  })
  if (before !== undefined) {
    void before.then(() => {
      const w = waiting ?? []
      waiting = undefined
      for (const m of w) take(m)
    })
  }
  // The port closes after everything the worker posted was delivered: whatever its journal still
  // holds was never posted (the thread died mid-turn), and goes out now, after the rest.
  p.on('close', () => {
    ports.delete(p)
    const finish = (): void => {
      const rest = unposted(journal, lastSeq)
      salvaged += rest.length
      for (const msg of rest) send(msg)
      closed()
    }
    if (before === undefined) finish()
    else void before.then(finish)
  })
}

const counters = (): Record<string, unknown> => ({ ...sender.stats(), refusedLocally, salvaged })

// The sender's counters reach the master once a second.
const statsTimer = setInterval(() => post({ t: 'stats', stats: counters() }), 1000)
statsTimer.unref()

port.on('message', (m: ToEgress) => {
  if (m.t === 'port') attach(m.slot, m.port, m.journal)
  else if (m.t === 'close') {
    // A worker's port closes after everything it posted was delivered here; wait for them all
    // (the workers have exited by now), at most half the linger, then hand over the rest.
    clearInterval(statsTimer)
    void (async () => {
      const t0 = Date.now()
      while (ports.size > 0 && Date.now() - t0 < m.lingerMs / 2) await new Promise((r) => setTimeout(r, 5))
      for (const p of ports) p.close()
      await sender.close({ lingerMs: Math.max(0, m.lingerMs - (Date.now() - t0)) })
      log.flush()
      post({ t: 'closed', stats: counters() })
      port.close()
    })()
  }
})

post({ t: 'ready' })
