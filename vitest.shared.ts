import { configDefaults, defineConfig } from 'vitest/config'

/**
 * `*.slow.test.ts`: process-level suites that take tens of seconds each (real servers under load,
 * kills and restarts, hundreds of thousands of players). `pnpm test` and CI run them;
 * `pnpm test:fast` (PEONY_TEST_FAST=1) leaves them out for a quick loop while developing.
 */
const fast = process.env.PEONY_TEST_FAST === '1' || process.env.PEONY_TEST_FAST === 'true'

/** Shared vitest settings: read package sources through the `@peony/source` export condition. */
export const sharedConfig = defineConfig({
  resolve: { conditions: ['@peony/source'] },
  ssr: { resolve: { conditions: ['@peony/source'] } },
  test: {
    exclude: fast ? [...configDefaults.exclude, '**/*.slow.test.ts'] : configDefaults.exclude,
    passWithNoTests: fast,
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
