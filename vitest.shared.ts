import { defineConfig } from 'vitest/config'

/** Shared vitest settings: read package sources through the `@peony/source` export condition. */
export const sharedConfig = defineConfig({
  resolve: { conditions: ['@peony/source'] },
  ssr: { resolve: { conditions: ['@peony/source'] } },
  test: {
    restoreMocks: true,
    clearMocks: true,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real sockets and threads on 2 cores: one file at a time per package keeps timing sane.
    fileParallelism: false,
    pool: 'forks',
    // Quiet logs unless a test asks for them (workers read it too).
    env: { PEONY_LOG_LEVEL: process.env.PEONY_LOG_LEVEL ?? 'silent' },
  },
})
