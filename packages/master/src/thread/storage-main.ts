/**
 * The storage thread: the one owner of the server's storage. It opens the configured driver
 * (a LevelDB directory admits one handle per process, so no worker opens it) and serves it to
 * every worker thread through that worker's own MessagePort (`serveStorage`); each worker talks
 * to it through a `RemoteStorage`. No application code runs here. Fencing makes a dead worker's
 * write that arrives late harmless: the worker that loaded the player after it holds a newer
 * generation.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import { pathToFileURL } from 'node:url'
import type { AbstractStorage } from '@peony/storage'
import { serveStorage } from '@peony/storage/remote'
import type { FromStorage, StorageBoot, StorageConfig, ToStorage } from './messages.ts'

const boot = workerData as StorageBoot
const port = parentPort!
const post = (m: FromStorage): void => port.postMessage(m)

/** Builds the configured driver (drivers are imported only when used, so ioredis stays optional). */
export async function createStorage(config: StorageConfig): Promise<AbstractStorage> {
  switch (config.driver) {
    case 'memory': {
      const { MemoryStorage } = await import('@peony/storage')
      return new MemoryStorage()
    }
    case 'leveldb': {
      const { LevelStorage } = await import('@peony/storage/leveldb')
      return new LevelStorage({ location: config.location, writeBufferSize: config.writeBufferSize, fenceCacheSize: config.fenceCacheSize })
    }
    case 'redis': {
      const { RedisStorage } = await import('@peony/storage/redis')
      // Told once, through the master's logger (instead of a bare process warning).
      return new RedisStorage({ url: config.url, prefix: config.prefix, onDataLoss: ({ code, message }) => (post({ t: 'warn', code, message }), false) })
    }
    case 'module': {
      const spec = config.module.startsWith('file:') ? config.module : pathToFileURL(config.module).href
      const mod = (await import(spec)) as { default?: (options: unknown) => AbstractStorage | Promise<AbstractStorage> }
      if (typeof mod.default !== 'function') throw new TypeError(`storage module ${config.module} must default-export a factory (options) => storage`)
      return await mod.default(config.options)
    }
  }
}

let storage: AbstractStorage | undefined
const served = new Set<{ close(): void }>()

try {
  storage = await createStorage(boot.config)
  await storage.open()
  post({ t: 'ready', supports: { ...storage.supports } })
} catch (err) {
  const e = err as { code?: string; message?: string; stack?: string; cause?: unknown }
  // The driver's own error (ECONNREFUSED, …) is the cause: the master's error keeps it as its cause's cause.
  const cause = e.cause instanceof Error ? e.cause.message : undefined
  post({ t: 'fatal', code: e.code, message: e.message ?? String(err), stack: e.stack, cause })
  port.close()
}

port.on('message', (m: ToStorage) => {
  if (m.t === 'serve') {
    if (storage === undefined) {
      m.port.close()
      return
    }
    const s = serveStorage(storage, m.port as MessagePort)
    served.add(s)
    m.port.on('close', () => served.delete(s))
  } else if (m.t === 'close') {
    void (async () => {
      for (const s of served) s.close()
      served.clear()
      try {
        await storage?.close()
        post({ t: 'closed' })
      } catch (err) {
        post({ t: 'closed', error: (err as Error).message })
      }
      port.close()
    })()
  }
})
