/**
 * @peony/fake-forwarder: a fake forwarder for Peony's tests, a real ZeroMQ ROUTER speaking
 * protocol §2 (egress in, acks out). Its own package because it needs `zeromq`, which
 * `@peony/test-utils` (used by storage and worker tests) must not bring. Private; never imported
 * by library code.
 */
export { startFakeForwarder } from './fake-forwarder.ts'
export type { FakeForwarder, FakeForwarderOptions, FakeForwarderRestartOptions, ForwardedMessage } from './fake-forwarder.ts'
