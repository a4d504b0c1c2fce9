/**
 * @peony/test-utils: helpers shared by Peony's tests. Addresses for every ZeroMQ transport,
 * polling waits, temporary directories, a Redis for tests, and a fake forwarder (a real ROUTER speaking protocol §2).
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
// Fake forwarder
export { startFakeForwarder } from './fake-forwarder.ts'
export type { FakeForwarder, FakeForwarderOptions, FakeForwarderRestartOptions, ForwardedMessage } from './fake-forwarder.ts'
