// Entry of the session benchmarks' threads (as packages/master/src/thread/boot.mjs): registers
// tsx in this thread so Peony runs from its TypeScript sources, then imports the real entry.
import { workerData } from 'node:worker_threads'

const { register } = await import('tsx/esm/api')
register()
await import(workerData.entry)
