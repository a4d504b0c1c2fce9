/**
 * The wire codec of protocol v1 (docs/protocol.md §0, §1.1, §2, §4).
 * Hand-written msgpack for the envelope (task maps, batches, egress messages, acks), so that
 * integers stay integers at every size up to 64 bits and every bad element becomes a coded
 * rejection instead of an exception; and the default msgpack business-body codec.
 */

// Intake frames (§0, §1.1)
export { decodeTasks } from './decode-tasks.ts'
export { encodeTask, encodeTasks, encodeTaskFrames } from './encode.ts'
export type { DecodedTasks } from './decode-tasks.ts'
export type { Rejection, DecodeOptions } from './decode-frame.ts'
export type { DecodedEgress } from './decode-egress.ts'
// Egress frames and acks (§2)
export { decodeEgress, decodeAck } from './decode-egress.ts'
export { encodeEgress, encodeEgressBatch, encodeAck, writeEgress } from './encode.ts'
// Business body (§4)
export { msgpackBodyCodec } from './body.ts'
export type { BodyCodec, RequestBody, ReplyBody, PushBody } from './body.ts'
// Generic msgpack with the protocol's integer rules
export { packValue } from './msgpack-writer.ts'
export { unpackValue } from './msgpack-reader.ts'
/** The growable writer behind `packValue`: several values (or hand-framed records) in one buffer, one allocation at `finish()`. */
export { Writer as MsgpackWriter } from './msgpack-writer.ts'
