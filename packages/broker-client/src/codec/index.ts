/**
 * @peony/broker-client/codec: kept for compatibility. The wire codec of protocol v1
 * (docs/protocol.md §0, §1.1, §2, §4), re-exported from `@peony/protocol`, where new code
 * imports it from.
 */

// Intake frames (§0, §1.1)
export { decodeTasks, encodeTask, encodeTasks, encodeTaskFrames } from '@peony/protocol'
export type { Rejection, DecodeOptions, DecodedTasks, DecodedEgress } from '@peony/protocol'
// Egress frames and acks (§2)
export { decodeEgress, decodeAck, encodeEgress, encodeEgressBatch, encodeAck, writeEgress } from '@peony/protocol'
// Business body (§4)
export { msgpackBodyCodec } from '@peony/protocol'
export type { BodyCodec, RequestBody, ReplyBody, PushBody } from '@peony/protocol'
// Generic msgpack with the protocol's integer rules
export { packValue, unpackValue, MsgpackWriter } from '@peony/protocol'
