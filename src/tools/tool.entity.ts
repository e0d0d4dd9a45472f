import type { JsonObject } from "@bufbuild/protobuf";
import { defineEntity, p } from "@mikro-orm/core";
import { newId } from "../common/ids.ts";
import { tenantIdProperty } from "../db/tenant.ts";

/** A JSON object as stored in a jsonb column. */
export type { JsonObject };

export const ToolSchema = defineEntity({
  name: "Tool",
  tableName: "tools",
  properties: {
    id: p.uuid().primary().onCreate(() => newId()),
    tenantId: tenantIdProperty(),
    name: p.string().length(100),
    description: p.text(),
    parameters: p.json<JsonObject>().nullable(),
    createTime: p.datetime().onCreate(() => new Date()),
    updateTime: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
    version: p.integer().version(),
  },
});

export class Tool extends ToolSchema.class {}
ToolSchema.setClass(Tool);
