#!/usr/bin/env node
// The `peony-server` command. It runs the built server, dist/main.js, in THIS process (no child
// process in between), so SIGTERM/SIGINT sent to it reach the server and stop it gracefully.
// dist/main.js loads `.js`/`.mjs` apps as they are and `.ts`/`.mts` apps (and config files)
// through tsx, registered only when one is needed.
//
// In a source checkout dist/ exists only after a build: without one this says so and exits 1
// (`pnpm --filter peony-server start` runs the TypeScript sources instead).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const main = new URL('../dist/main.js', import.meta.url)
if (!existsSync(main)) {
  process.stderr.write(
    `peony-server: ${fileURLToPath(main)} is missing: this copy of peony-server is not built.\n` +
      'In the Peony repository, build it (pnpm --filter peony-server... build) or run the sources (pnpm --filter peony-server start).\n',
  )
  process.exit(1)
}
await import(main.href)
