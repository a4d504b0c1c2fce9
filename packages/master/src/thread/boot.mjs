// Bootstrap of a worker thread when Peony runs from TypeScript sources (tests, `pnpm start`) or
// the application module is TypeScript: registers tsx in this thread, then imports the real
// entry. A built master (dist/) with a JavaScript app starts the compiled entry directly; with a
// TypeScript app it loads this file from the package's src/thread/ (published with the package).
import { workerData } from 'node:worker_threads'

const { register } = await import('tsx/esm/api')
register()
await import(workerData.entry)
