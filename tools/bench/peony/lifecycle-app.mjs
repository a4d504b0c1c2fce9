/**
 * The bench app for the start and respawn benchmarks. The first `battle.attack` a worker thread
 * handles prints {bench:'handled', thread, at} on the process's stdout (a synchronous write to
 * fd 1, so it does not wait for the main thread); `bench.exit` prints {bench:'exit', …} and ends
 * the thread with exit code 1.
 */
import fs from 'node:fs'
import { threadId } from 'node:worker_threads'
import { createApp } from '@peony/worker'

const thread = `${process.pid}/${threadId}`
const mark = (bench) => fs.writeSync(1, JSON.stringify({ bench, thread, at: performance.timeOrigin + performance.now() }) + '\n')
let first = true

const app = createApp()

app.route('battle.attack', () => {
  if (first) {
    first = false
    mark('handled')
  }
})

app.route('bench.exit', () => {
  mark('exit')
  process.exit(1)
})

export default app
