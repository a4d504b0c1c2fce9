/**
 * The egress thread: owns the DEALER to the forwarder for all workers of this server. Each
 * worker posts its egress batches through its own MessagePort; this thread hands them, in
 * order, to one EgressSender (bounded buffer, overflow counted, optional seq/ack). No
 * application code runs here, so an abrupt worker death never tears down a ZeroMQ socket.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import { BrokerErrorCode, createEgressSender, isPeonyError, LogLimiter, type EgressMessage } from '@peony/broker-client'
import { createThreadLogger } from './thread-logger.ts'
import type { EgressBoot, FromEgress, ToEgress } from './messages.ts'

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
const ports = new Set<MessagePort>()

function attach(p: MessagePort): void {
  ports.add(p)
  p.on('message', (batch: EgressMessage[]) => {
    for (let i = 0; i < batch.length; i++) {
      try {
        sender.send(batch[i]!)
      } catch (err) {
        // Unencodable or oversized message (a 230 row with a str uid, say): the sender counted
        // nothing, so count it here; it shows as egress.refusedLocally in the master's stats.
        refusedLocally++
        const code = isPeonyError(err) ? err.code : BrokerErrorCode.ENCODE_FAILED
        log.warn(`refused ${code}`, { err, code, cmd: batch[i]!.cmd }, 'egress message dropped: it cannot be sent')
      }
    }
  })
  p.on('close', () => ports.delete(p))
}

// The sender's counters reach the master once a second.
const statsTimer = setInterval(() => post({ t: 'stats', stats: { ...sender.stats(), refusedLocally } }), 1000)
statsTimer.unref()

port.on('message', (m: ToEgress) => {
  if (m.t === 'port') attach(m.port)
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
      post({ t: 'closed', stats: { ...sender.stats(), refusedLocally } })
      port.close()
    })()
  }
})

post({ t: 'ready' })
