/**
 * @peony/test-utils: helpers shared by Peony's tests. Addresses for every ZeroMQ transport,
 * polling waits, temporary directories and a Redis for tests. No dependency (no `zeromq`: the fake
 * forwarder is `@peony/fake-forwarder`), so storage and worker tests never reach the addon.
 * Private; never imported by library code.
 */

// Addresses and paths
export { uniqAddress, freePort, testTransports, tempDir } from './addresses.ts'
export type { Transport } from './addresses.ts'
// Waiting
export { waitFor, sleep, collect } from './wait.ts'
export type { WaitForOptions } from './wait.ts'
// Redis
export { redisForTests, startRedisServer, pingRedis } from './redis.ts'
export type { TestRedis, RedisServer, StartRedisOptions } from './redis.ts'
