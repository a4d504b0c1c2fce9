/**
 * A peer in another language: Python (pyzmq + msgpack, Debian's /usr/bin/python3) sends tasks and
 * batches with 64-bit values to a real master and reads the replies at its own ROUTER standing in
 * for the forwarder (protocol §0–§2, §4).
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import pino from 'pino'
import { freePort } from '@peony/test-utils'
import { createMaster, type Master } from '../src/index.ts'
import { TEST_APP } from './helpers.ts'

const PY = '/usr/bin/python3'
const SCRIPT = fileURLToPath(new URL('./peer/py_peer.py', import.meta.url))

async function pythonPeerAvailable(): Promise<boolean> {
  if (!existsSync(PY)) return false
  try {
    await promisify(execFile)(PY, ['-c', 'import zmq, msgpack'])
    return true
  } catch {
    return false
  }
}

const available = await pythonPeerAvailable()
if (!available) {
  const msg = `\n*** ${PY} with zmq and msgpack is missing: the Python peer test cannot run (apt-get install python3-zmq python3-msgpack) ***\n`
  if (process.env.CI === 'true') throw new Error(msg)
  console.warn(msg)
}

let master: Master | undefined
afterEach(async () => {
  await master?.stop()
  master = undefined
})

describe.skipIf(!available)('Python peer', () => {
  it('sends tasks and batches with 64-bit values; reads exact replies and pushes at its forwarder ROUTER', async () => {
    const fport = await freePort()
    const forwarder = `tcp://127.0.0.1:${fport}`
    master = createMaster({
      serverId: 'py',
      appModule: TEST_APP,
      intakeEndpoints: ['tcp://127.0.0.1:0'],
      forwarderEndpoint: forwarder,
      groups: [{ id: 1, count: 2 }],
      logger: pino({ level: 'silent' }),
    })
    const { intakeEndpoints } = await master.start()
    const { stdout } = await promisify(execFile)(PY, [SCRIPT, intakeEndpoints[0]!, `tcp://127.0.0.1:${fport}`], { timeout: 60_000 })
    const verdict = JSON.parse(stdout.trim().split('\n').pop()!) as { replies: number; pushes: number; errors: string[] }
    expect(verdict.errors).toEqual([])
    expect(verdict.replies).toBe(6)
    expect(verdict.pushes).toBe(6)
    expect(master.stats().rejects).toEqual({ PEONY_BROKER_WRONG_TYPE: 1 })
  }, 90_000)
})
