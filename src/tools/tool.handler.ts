import type { ServiceImpl } from "@connectrpc/connect";
import { CreateToolRequestSchema, ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { checkEtag } from "../common/etag.ts";
import { InvalidArgumentError } from "../common/errors.ts";
import { maskPaths } from "../common/field-mask.ts";
import { objectSchemaViolations } from "../common/json-schema.ts";
import { pageSizeOf, type PageTokens } from "../common/page-token.ts";
import { tenantOf } from "../db/tenant.ts";
import { idempotentCreate } from "../idempotency/idempotency.ts";
import { emOf } from "../call-context.ts";
import type { Quotas } from "../tenants/quotas.ts";
import type { JsonObject } from "./tool.entity.ts";
import { toToolMessage } from "./tool.mapper.ts";
import { ToolRepository, type ToolFields } from "./tool.repository.ts";

const UPDATABLE = ["name", "description", "parameters"] as const;

/** ToolService over the request's EntityManager. */
export function toolHandler(deps: { pageTokens: PageTokens; quotas: Quotas }): ServiceImpl<typeof ToolService> {
  return {
    async createTool(req, ctx) {
      const tool = req.tool!;
      const parameters = checkedParameters(tool.parameters, "tool.parameters");
      return idempotentCreate(emOf(ctx), {
        requestId: req.requestId,
        method: "CreateTool",
        schema: CreateToolRequestSchema,
        request: req,
        create: async (tx) => {
          await deps.quotas.reserve(tx, "tools");
          const created = await new ToolRepository(tx).create({ name: tool.name, description: tool.description, parameters });
          return { id: created.id, result: { tool: toToolMessage(created) } };
        },
        replay: async (em, id) => ({ tool: toToolMessage(await new ToolRepository(em).get(id)) }),
      });
    },

    async getTool(req, ctx) {
      const tool = await new ToolRepository(emOf(ctx)).get(req.toolId);
      return { tool: toToolMessage(tool) };
    },

    async listTools(req, ctx) {
      const em = emOf(ctx);
      const limit = pageSizeOf(req.pageSize);
      const query = { rpc: "ListTools", namePrefix: req.namePrefix };
      const cursor = deps.pageTokens.decode(tenantOf(em), query, req.pageToken);
      const rows = await new ToolRepository(em).list({
        limit: limit + 1,
        afterName: cursor?.[0] as string | undefined,
        namePrefix: req.namePrefix,
      });
      const { page, nextPageToken } = deps.pageTokens.nextPage(tenantOf(em), query, rows, limit, (last) => [last.name]);
      return { tools: page.map(toToolMessage), nextPageToken };
    },

    async updateTool(req, ctx) {
      const repo = new ToolRepository(emOf(ctx));
      const paths = maskPaths(req.updateMask, UPDATABLE);
      const tool = await repo.get(req.toolId);
      checkEtag(req.etag, tool, "tool");
      const input = req.tool!;
      const fields: Partial<ToolFields> = {};
      if (paths.has("name")) fields.name = input.name;
      if (paths.has("description")) fields.description = input.description;
      if (paths.has("parameters")) fields.parameters = checkedParameters(input.parameters, "tool.parameters");
      return { tool: toToolMessage(await repo.update(tool, fields)) };
    },

    async deleteTool(req, ctx) {
      const repo = new ToolRepository(emOf(ctx));
      const tool = await repo.get(req.toolId);
      checkEtag(req.etag, tool, "tool");
      await repo.delete(tool);
      return {};
    },
  };
}

function checkedParameters(parameters: JsonObject | undefined, field: string): JsonObject | null {
  if (parameters === undefined) return null;
  const violations = objectSchemaViolations(parameters, field);
  if (violations.length > 0) throw new InvalidArgumentError(violations, "INVALID_JSON_SCHEMA");
  return parameters;
}
