import { create } from "@bufbuild/protobuf";
import { ToolSchema as ToolMessageSchema, type Tool as ToolMessage } from "../../gen/agentplatform/v1/tool_pb.js";
import { etagOf } from "../common/etag.ts";
import { toTimestamp } from "../common/time.ts";
import type { Tool } from "./tool.entity.ts";

/** The API view of a stored tool. */
export function toToolMessage(tool: Tool): ToolMessage {
  return create(ToolMessageSchema, {
    id: tool.id,
    name: tool.name,
    description: tool.description,
    parameters: tool.parameters ?? undefined,
    createTime: toTimestamp(tool.createTime),
    updateTime: toTimestamp(tool.updateTime),
    etag: etagOf(tool.version),
  });
}
