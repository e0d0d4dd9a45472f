import type { ServiceImpl } from "@connectrpc/connect";
import { CreateAgentTemplateRequestSchema, type AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { InvalidArgumentError } from "../common/errors.ts";
import { pageSizeOf, type PageTokens } from "../common/page-token.ts";
import { tenantOf } from "../db/tenant.ts";
import { idempotentCreate } from "../idempotency/idempotency.ts";
import { emOf } from "../call-context.ts";
import { AgentTemplateRepository } from "./agent-template.repository.ts";
import { toBuiltinTemplateMessage, toTemplateMessage } from "./agent.mapper.ts";
import { builtinTemplates } from "./builtin-templates.ts";
import { agentType } from "./codecs.ts";

/** The template RPCs of AgentService. */
export function templateHandler(deps: { pageTokens: PageTokens }): Partial<ServiceImpl<typeof AgentService>> {
  return {
    async createAgentTemplate(req, ctx) {
      const t = req.template!;
      const violations = [
        ...(t.name === "" ? [{ field: "template.name", description: "is required" }] : []),
        ...(!t.agentType ? [{ field: "template.agent_type", description: "is required" }] : []),
      ];
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      return idempotentCreate(emOf(ctx), {
        requestId: req.requestId,
        method: "CreateAgentTemplate",
        schema: CreateAgentTemplateRequestSchema,
        request: req,
        create: async (tx) => {
          const created = await new AgentTemplateRepository(tx).create({
            name: t.name,
            description: t.description,
            agentType: agentType.toDb(t.agentType),
            config: t.config ?? {},
            systemPrompt: t.systemPrompt,
            promptTemplates: t.promptTemplates.map((p) => ({ name: p.name, template: p.template })),
          });
          return { id: created.id, result: { template: toTemplateMessage(created) } };
        },
        replay: async (em, id) => {
          const found = await new AgentTemplateRepository(em).get(id);
          return { template: found.builtIn ? toBuiltinTemplateMessage(found.template) : toTemplateMessage(found.template) };
        },
      });
    },

    async getAgentTemplate(req, ctx) {
      const found = await new AgentTemplateRepository(emOf(ctx)).get(req.templateId);
      return { template: found.builtIn ? toBuiltinTemplateMessage(found.template) : toTemplateMessage(found.template) };
    },

    // Built-in templates come first (page key section 0), then the tenant's
    // own in name order (section 1).
    async listAgentTemplates(req, ctx) {
      const em = emOf(ctx);
      const limit = pageSizeOf(req.pageSize);
      const query = { rpc: "ListAgentTemplates" };
      const cursor = deps.pageTokens.decode(tenantOf(em), query, req.pageToken);
      const [section, after] = cursor ? [Number(cursor[0]), String(cursor[1])] : [0, undefined];
      const builtins = section === 0 ? builtinTemplates.filter((t) => after === undefined || t.id > after) : [];
      const own = await new AgentTemplateRepository(em).list(
        limit + 1 - Math.min(builtins.length, limit + 1),
        section === 1 ? after : undefined,
      );
      const rows = [
        ...builtins.map((t) => ({ key: [0, t.id], message: toBuiltinTemplateMessage(t) })),
        ...own.map((t) => ({ key: [1, t.name], message: toTemplateMessage(t) })),
      ];
      const { page, nextPageToken } = deps.pageTokens.nextPage(tenantOf(em), query, rows, limit, (last) => last.key);
      return { templates: page.map((r) => r.message), nextPageToken };
    },

    async deleteAgentTemplate(req, ctx) {
      await new AgentTemplateRepository(emOf(ctx)).delete(req.templateId);
      return {};
    },
  };
}
