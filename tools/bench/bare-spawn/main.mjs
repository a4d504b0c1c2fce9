/**
 * bare-spawn: the baseline of the respawn benchmark. In a process that already runs 2 worker
 * threads (importing msgpackr, like bare-skeleton's), one of them stamps the time and exits; on
 * its 'exit' event the main thread starts a new one (`new Worker`) and waits for its first
 * message (sent once msgpackr is imported).
 *   spawnMs       = first message − new Worker()     (the value the target compares with)
 *   exitToFirstMs = first message − the exit stamp   (the same span Peony's respawn is measured on)
 *
 *   node bare-spawn/main.mjs
 */
import { Worker } from 'node:worker_threads'
import { nowMs } from '../lib/tasks.mjs'

const url = new URL('./worker.mjs', import.meta.url)
const start = () => {
  const t = nowMs()
  const w = new Worker(url)
  const first = new Promise((resolve, reject) => {
    w.once('message', (m) => resolve({ m, ms: nowMs() - t }))
    w.once('error', reject)
  })
  return { w, first }
}
const a = start()
const b = start()
const firstSpawnMs = Math.max((await a.first).ms, (await b.first).ms)
const exited = new Promise((resolve) => a.w.once('exit', resolve))
const exitAt = new Promise((resolve) => a.w.once('message', (m) => resolve(m.exitAt)))
a.w.postMessage('exit')
await exited
const c = start()
const { ms: spawnMs } = await c.first
const firstAt = nowMs()
const exitToFirstMs = firstAt - (await exitAt)
process.stdout.write(JSON.stringify({ bench: 'result', spawnMs, exitToFirstMs, firstSpawnMs }) + '\n')
await b.w.terminate()
await c.w.terminate()
