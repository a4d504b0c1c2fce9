/**
 * The storage host thread of the session benchmarks, as packages/master/src/thread/storage-main.ts
 * runs it in peony-server: opens one LevelStorage (or RedisStorage) and serves it with
 * `serveStorage` on the MessagePort it was given. Default options except the location (and a
 * Redis prefix); `writeBufferSize` only when the benchmark sets one.
 *
 * workerData.data: {config: {driver, location?, url?, prefix?, writeBufferSize?}, port}.
 * Messages: → {t:'ready', tid} once open (tid: the thread's id, for common.mjs threadTimes); {t:'close'} → closes the storage → {t:'closed'}.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { serveStorage } from '@peony/storage/remote'
import { threadId } from './common.mjs'

const { config, port } = workerData.data
const post = (m) => parentPort.postMessage(m)

let storage
try {
  if (config.driver === 'leveldb') {
    const { LevelStorage } = await import('@peony/storage/leveldb')
    storage = new LevelStorage({ location: config.location, ...(config.writeBufferSize ? { writeBufferSize: config.writeBufferSize } : {}) })
  } else if (config.driver === 'redis') {
    const { RedisStorage } = await import('@peony/storage/redis')
    storage = new RedisStorage({ url: config.url, prefix: config.prefix })
  } else {
    throw new TypeError(`unknown driver ${config.driver}`)
  }
  await storage.open()
} catch (err) {
  post({ t: 'fatal', message: err?.message ?? String(err), stack: err?.stack })
  throw err
}
const server = serveStorage(storage, port)
post({ t: 'ready', tid: threadId() })

parentPort.on('message', async (m) => {
  if (m?.t !== 'close') return
  server.close()
  await storage.close()
  post({ t: 'closed' })
  parentPort.close()
})
