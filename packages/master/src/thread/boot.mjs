// Bootstrap of a worker thread when Peony runs from TypeScript sources (tests, `pnpm start`):
// registers tsx in this thread, then imports the real entry. Built deployments (dist/) start
// the compiled entry directly and never load this file.
import { workerData } from 'node:worker_threads'

const { register } = await import('tsx/esm/api')
register()
await import(workerData.entry)
