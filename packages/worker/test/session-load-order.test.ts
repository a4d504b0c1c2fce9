/**
 * A session load that passes loadTimeoutMs (a slow cold LevelDB read after a restart) is
 * abandoned and retried; the abandoned claim must not take the newer generation and fence the
 * live session off (which dropped its acknowledged changes). Real LevelStorage on disk; the only
 * fault injected is one slowed LevelDB read, which a real LevelDB cannot produce on demand.
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { createApp } from '@peony/worker'
import { createTestHarness } from '@peony/worker/testing'
import { LevelStorage } from '@peony/storage/leveldb'
import { holdNextRead } from '@peony/storage/leveldb/testing'
import { unpackValue } from '@peony/protocol'
import { tempDir, waitFor } from '@peony/test-utils'

const tick = () => new Promise((r) => setImmediate(r))

describe('a load abandoned by loadTimeoutMs, then retried (LevelStorage)', () => {
  test('the retry owns the session: its acknowledged increments are stored, nothing is fenced', async () => {
    const app = createApp()
    const def = app.session<{ n: number }>({ initial: () => ({ n: 0 }) })
    app.route('inc', (req) => {
      const s = def.of(req)
      s.state.n++
      req.reply({ n: s.state.n })
    })
    const location = join(tempDir('peony-load-order-'), 'db')
    const storage = new LevelStorage({ location })
    await storage.open()
    const h = createTestHarness(app, { sessions: { storage, loadTimeoutMs: 2000, flushIntervalMs: 1000, maxUnflushedAgeMs: 1000 } })
    try {
      await h.ready
      const held = holdNextRead({ location })
      // The first load's read is slow (a cold read after a restart): the load times out.
      const first = h.inject({ cmd: 'inc', uid: 7 })
      await h.advance(2000)
      expect((await first).replies[0]?.ret).toBe(-10005)
      // The next request loads again; the slow read finishes meanwhile.
      const second = h.inject({ cmd: 'inc', uid: 7 })
      for (let i = 0; i < 5; i++) await tick()
      held.release()
      expect((await second).replies[0]?.data).toEqual({ n: 1 })
      expect((await h.inject({ cmd: 'inc', uid: 7 })).replies[0]?.data).toEqual({ n: 2 })
      // Write-behind: both acknowledged increments reach storage; the session is not fenced.
      await h.advance(1000)
      // The write is a real LevelDB batch: wait in real time until it has landed (a session stops
      // counting as dirty when its write starts, not when the batch is on disk).
      const stored = async (): Promise<unknown> => {
        const bytes = await storage.get('player:7')
        if (bytes === undefined) return undefined
        const rec = unpackValue(bytes) as [number, Uint8Array, unknown]
        return unpackValue(rec[1])
      }
      await waitFor(async () => ((await stored()) as { n?: number } | undefined)?.n === 2, { timeoutMs: 5000 })
      await h.advance(1000)
      expect(h.stats().sessions).toMatchObject({ fenced: 0, dirty: 0 })
      expect(await stored(), 'the session was stored').toEqual({ n: 2 })
    } finally {
      await h.stop()
      await storage.close()
      rmSync(location, { recursive: true, force: true })
    }
  })
})
