import pino from 'pino'
import * as zmq from 'zeromq'
import { createMaster } from '../src/index.ts'
import { encodeTask, packValue } from '@peony/protocol'
const m = createMaster({
  serverId: 'p',
  appModule: new URL('../../../tools/bench/peony/app.mjs', import.meta.url).pathname,
  intakeEndpoints: ['tcp://127.0.0.1:0'],
  forwarderEndpoint: 'tcp://127.0.0.1:1',
  logger: pino({ level: 'silent' }),
  queueMaxSize: 1_000_000,
})
const { intakeEndpoints } = await m.start()
const d = new zmq.Dealer({ sendHighWaterMark: 0 })
d.connect(intakeEndpoints[0]!)
const N = 150_000,
  body = new Uint8Array(100)
const frames: Uint8Array[] = []
for (let j = 0; j < N; j++)
  frames.push(
    encodeTask({ cmd: 10, uid: 1 + (j % 1000), nodeId: 1, connId: j, body: packValue({ cmd: 'battle.attack', sn: Math.floor(j / 1000), data: body }) }),
  )
const t0 = performance.now()
for (const f of frames) await d.send(f)
while (m.stats().client_req < N || m.stats().in_flight.all > 0 || m.stats().pending_tasks.all > 0) await new Promise((r) => setTimeout(r, 2))
const s = m.stats()
console.log(
  JSON.stringify({
    rate: Math.round(N / ((performance.now() - t0) / 1000)),
    dispatch: s.dispatch,
    perMsg: (s.dispatch.tasks / s.dispatch.messages).toFixed(1),
    handled: s.handlers.handled,
  }),
)
d.linger = 0
d.close()
await m.destroy()
process.exit(0)
