/**
 * The runtime's own replies to a client: -10000 (no handler), -10001 (failed or timed out),
 * -10004 (undecodable body), -10005 (session not loaded). They go only to task cmd 10/100 with
 * nodeId + connId, and never throw.
 */
import { type BodyCodec, type Int64, ReplyCode, type Task } from '@peony/protocol'
import type { PeonyRequest } from '../request.ts'
import type { EgressSink, RuntimeLogger } from './contract.ts'

export function hasConnection(task: Task): boolean {
  return task.nodeId !== undefined && task.connId !== undefined
}

/** True when the runtime answers this task itself on errors: a 10/100 from a client connection. */
export function autoReplies(task: Task): boolean {
  return (task.cmd === 10 || task.cmd === 100) && hasConnection(task)
}

/** Answers -10001 for a failed or timed-out request when it can and nobody has answered yet. */
export function replyFailed(req: PeonyRequest, log: RuntimeLogger): void {
  if (req.replied || !autoReplies(req.task)) return
  try {
    req.reply(undefined, ReplyCode.HANDLER_FAILED)
  } catch (e) {
    log.error({ err: e, req: req.toJSON() }, 'could not send the -10001 reply')
  }
}

/** Sends one of the runtime's own error replies; never throws. */
export function autoReply(
  codec: BodyCodec,
  sink: EgressSink,
  log: RuntimeLogger,
  id: number,
  task: Task,
  cmd: number | string | undefined,
  sn: Int64 | undefined,
  ret: number,
): void {
  try {
    const body = codec.encodeReply({ cmd, sn, ret })
    sink.send({ cmd: 220, nodeId: task.nodeId as number, connId: task.connId as Int64, tag: task.tag, ret, body }, id, true)
  } catch (err) {
    log.error({ err, taskId: id, ret }, 'could not send an error reply')
  }
}
