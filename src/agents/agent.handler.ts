import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { OptimisticLockError, UniqueConstraintViolationException } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import {
  AgentState,
  AgentVisibility,
  type PromptTemplate,
} from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentOrder, AgentService, CreateAgentRequestSchema } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { emOf, principalOf } from "../call-context.ts";
import { checkEtag } from "../common/etag.ts";
import { FailedPreconditionError, InvalidArgumentError } from "../common/errors.ts";
import { maskPaths } from "../common/field-mask.ts";
import { pageSizeOf, type PageTokens } from "../common/page-token.ts";
import { tenantOf } from "../db/tenant.ts";
import { idempotentCreate } from "../idempotency/idempotency.ts";
import type { Quotas } from "../tenants/quotas.ts";
import { AgentTemplateRepository } from "./agent-template.repository.ts";
import { checkTransition } from "./agent-state.ts";
import { linkCredentials, requireCredentials } from "./credential-binding.ts";
import type { StoredPromptTemplate } from "./agent-version.entity.ts";
import { toAgentMessage, toAgentVersionMessage } from "./agent.mapper.ts";
import { AgentRepository, type VersionFields } from "./agent.repository.ts";
import { agentState, agentType, agentVisibility } from "./codecs.ts";

/** What the agent handlers need besides the request. */
export interface AgentDeps {
  pageTokens: PageTokens;
  /** Days a soft-deleted agent is kept before it is purged. */
  agentRetentionDays: number;
  /** Live agents are bounded per tenant: creates and undeletes check it. */
  quotas: Quotas;
}

const UPDATABLE = [
  "name",
  "role",
  "description",
  "agent_type",
  "state",
  "tags",
  "capabilities",
  "visibility",
  "config",
  "system_prompt",
  "prompt_templates",
] as const;
const VERSIONED = new Set(["config", "system_prompt", "prompt_templates"]);
// Tries of an etag-less write that keeps losing races.
const MAX_ATTEMPTS = 3;

/** The agent RPCs of AgentService (templates are in template.handler.ts). */
export function agentHandler(deps: AgentDeps): Partial<ServiceImpl<typeof AgentService>> {
  /** Runs `work` in one transaction on the request's EntityManager. */
  /**
   * Runs `work` in one transaction. A caller that sent no etag asked for no
   * concurrency check, so a lost race (another writer bumped the agent, or
   * inserted the same link) is retried instead of answered ABORTED.
   */
  const inTransaction = async <T>(
    ctx: HandlerContext,
    work: (repo: AgentRepository, em: EntityManager) => Promise<T>,
    retryOnConflict = false,
  ): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await emOf(ctx).transactional((tx) => work(new AgentRepository(tx, principalOf(ctx)), tx));
      } catch (err) {
        const conflict = err instanceof OptimisticLockError || err instanceof UniqueConstraintViolationException;
        if (!retryOnConflict || !conflict || attempt >= MAX_ATTEMPTS) throw err;
      }
    }
  };

  return {
    async createAgent(req, ctx) {
      const input = req.agent!;
      const principal = principalOf(ctx);
      return idempotentCreate(emOf(ctx), {
        requestId: req.requestId,
        method: "CreateAgent",
        schema: CreateAgentRequestSchema,
        request: req,
        replay: async (em, id) => {
          const repo = new AgentRepository(em, principal);
          return { agent: toAgentMessage(await repo.getView(id)) };
        },
        create: async (tx) => {
        const repo = new AgentRepository(tx, principal);
        const template = req.templateId ? await new AgentTemplateRepository(tx).get(req.templateId) : undefined;
        const templateType = template && (template.builtIn ? template.template.agentType : agentType.fromDb(template.template.agentType));
        const type = input.agentType || templateType;
        const violations = [
          ...(input.name === "" ? [{ field: "agent.name", description: "is required" }] : []),
          ...(input.role === "" ? [{ field: "agent.role", description: "is required" }] : []),
          ...(!type ? [{ field: "agent.agent_type", description: "is required (or name a template_id)" }] : []),
          ...(input.state === AgentState.DELETED ? [{ field: "agent.state", description: "cannot be DELETED on create" }] : []),
          ...promptTemplateViolations(input.promptTemplates),
        ];
        if (violations.length > 0) throw new InvalidArgumentError(violations);
        await deps.quotas.reserve(tx, "agents");
        await requireCredentials(tx, input.credentialIds);
        const base = template?.template;
        const agent = await repo.create(
          {
            name: input.name,
            role: input.role,
            description: input.description,
            agentType: agentType.toDb(type!),
            state: agentState.toDb(input.state || AgentState.ACTIVE),
            tags: input.tags,
            capabilities: input.capabilities,
            visibility: agentVisibility.toDb(input.visibility || AgentVisibility.TENANT),
          },
          {
            config: { ...(base?.config ?? {}), ...(input.config ?? {}) },
            systemPrompt: input.systemPrompt || base?.systemPrompt || "",
            promptTemplates: input.promptTemplates.length > 0 ? stored(input.promptTemplates) : (base?.promptTemplates ?? []),
            changeNote: req.changeNote || (req.templateId ? `created from template ${req.templateId}` : "created"),
          },
          input.toolIds,
        );
        await linkCredentials(tx, agent.id, input.credentialIds);
        return { id: agent.id, result: { agent: toAgentMessage(await repo.view(agent)) } };
        },
      });
    },

    async getAgent(req, ctx) {
      const repo = new AgentRepository(emOf(ctx), principalOf(ctx));
      return { agent: toAgentMessage(await repo.getView(req.agentId)) };
    },

    async listAgents(req, ctx) {
      const em = emOf(ctx);
      const repo = new AgentRepository(em, principalOf(ctx));
      const limit = pageSizeOf(req.pageSize);
      const orderBy = req.orderBy === AgentOrder.NAME ? "name" : "createTime";
      const filters = {
        states: req.states.map((s) => (s === AgentState.DELETED ? "DELETED" : agentState.toDb(s))).sort(),
        agentTypes: req.agentTypes.map((t) => agentType.toDb(t)).sort(),
        tags: [...req.tags].sort(),
        namePrefix: req.namePrefix,
        creator: req.creator,
        visibility: req.visibility ? agentVisibility.toDb(req.visibility) : "",
        includeDeleted: req.showDeleted || req.states.includes(AgentState.DELETED),
        onlyDeleted: false,
      };
      const query = { rpc: "ListAgents", orderBy, ...filters };
      const cursor = deps.pageTokens.decode(tenantOf(em), query, req.pageToken);
      const rows = await repo.listViews({
        ...filters,
        limit: limit + 1,
        orderBy,
        after: cursor ? [String(cursor[0]), String(cursor[1])] : undefined,
      });
      const { page, nextPageToken } = deps.pageTokens.nextPage(tenantOf(em), query, rows, limit, ({ agent: last }) => [
        orderBy === "name" ? last.name : last.createTime.toISOString(),
        last.id,
      ]);
      return { agents: page.map(toAgentMessage), nextPageToken };
    },

    async updateAgent(req, ctx) {
      const paths = maskPaths(req.updateMask, UPDATABLE);
      const input = req.agent!;
      const violations = [
        ...(paths.has("name") && input.name === "" ? [{ field: "agent.name", description: "must not be empty" }] : []),
        ...(paths.has("role") && input.role === "" ? [{ field: "agent.role", description: "must not be empty" }] : []),
        ...(paths.has("agent_type") && !input.agentType ? [{ field: "agent.agent_type", description: "must be set" }] : []),
        ...(paths.has("visibility") && !input.visibility ? [{ field: "agent.visibility", description: "must be set" }] : []),
        ...(paths.has("state") && !input.state ? [{ field: "agent.state", description: "must be set" }] : []),
        ...(paths.has("prompt_templates") ? promptTemplateViolations(input.promptTemplates) : []),
      ];
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      return inTransaction(ctx, async (repo) => {
        const agent = await repo.getLive(req.agentId);
        checkEtag(req.etag, agent, "agent");
        if (paths.has("state")) {
          checkTransition(agent.id, agentState.fromDb(agent.state), input.state);
          agent.state = agentState.toDb(input.state);
        }
        if (paths.has("name")) agent.name = input.name;
        if (paths.has("role")) agent.role = input.role;
        if (paths.has("description")) agent.description = input.description;
        if (paths.has("agent_type")) agent.agentType = agentType.toDb(input.agentType);
        if (paths.has("tags")) agent.tags = input.tags;
        if (paths.has("capabilities")) agent.capabilities = input.capabilities;
        if (paths.has("visibility")) agent.visibility = agentVisibility.toDb(input.visibility);
        let newVersion: VersionFields | undefined;
        if ([...paths].some((p) => VERSIONED.has(p))) {
          const { active } = await repo.view(agent);
          newVersion = {
            config: paths.has("config") ? (input.config ?? {}) : (active?.config ?? {}),
            systemPrompt: paths.has("system_prompt") ? input.systemPrompt : (active?.systemPrompt ?? ""),
            promptTemplates: paths.has("prompt_templates") ? stored(input.promptTemplates) : (active?.promptTemplates ?? []),
            changeNote: req.changeNote,
          };
        }
        await repo.save(agent, newVersion);
        return { agent: toAgentMessage(await repo.view(agent)) };
      }, req.etag === "");
    },

    async deleteAgent(req, ctx) {
      return inTransaction(ctx, async (repo) => {
        const agent = await repo.getLive(req.agentId);
        checkEtag(req.etag, agent, "agent");
        await repo.softDelete(agent, deps.agentRetentionDays);
        return { agent: toAgentMessage(await repo.view(agent)) };
      }, req.etag === "");
    },

    async undeleteAgent(req, ctx) {
      return inTransaction(ctx, async (repo, tx) => {
        const agent = await repo.get(req.agentId);
        if (!agent.deleteTime) {
          throw new FailedPreconditionError("the agent is not deleted", "AGENT_NOT_DELETED", [
            { type: "AGENT_NOT_DELETED", subject: `agents/${agent.id}`, description: "only a deleted agent can be undeleted" },
          ]);
        }
        await deps.quotas.reserve(tx, "agents");
        await repo.undelete(agent);
        return { agent: toAgentMessage(await repo.view(agent)) };
      }, true);
    },

    async purgeAgent(req, ctx) {
      return inTransaction(ctx, async (repo) => {
        const agent = await repo.get(req.agentId);
        if (!agent.deleteTime) {
          throw new FailedPreconditionError("delete the agent before purging it", "AGENT_NOT_DELETED", [
            { type: "AGENT_NOT_DELETED", subject: `agents/${agent.id}`, description: "call DeleteAgent first" },
          ]);
        }
        if (!(await repo.purge(agent))) {
          throw new FailedPreconditionError("the agent was undeleted meanwhile", "AGENT_NOT_DELETED", [
            { type: "AGENT_NOT_DELETED", subject: `agents/${agent.id}`, description: "call DeleteAgent first" },
          ]);
        }
        return {};
      });
    },

    async attachTools(req, ctx) {
      return inTransaction(ctx, async (repo) => {
        const agent = await repo.getLive(req.agentId);
        await repo.attachTools(agent, req.toolIds);
        return { agent: toAgentMessage(await repo.view(agent)) };
      }, true);
    },

    async detachTools(req, ctx) {
      return inTransaction(ctx, async (repo) => {
        const agent = await repo.get(req.agentId);
        await repo.detachTools(agent, req.toolIds);
        return { agent: toAgentMessage(await repo.view(agent)) };
      }, true);
    },

    async listAgentVersions(req, ctx) {
      const em = emOf(ctx);
      const repo = new AgentRepository(em, principalOf(ctx));
      const agent = await repo.get(req.agentId);
      const limit = pageSizeOf(req.pageSize);
      const query = { rpc: "ListAgentVersions", agentId: agent.id };
      const cursor = deps.pageTokens.decode(tenantOf(em), query, req.pageToken);
      const rows = await repo.versions(agent.id, limit + 1, cursor ? Number(cursor[0]) : undefined);
      const { page, nextPageToken } = deps.pageTokens.nextPage(tenantOf(em), query, rows, limit, (last) => [last.version]);
      return { versions: page.map(toAgentVersionMessage), nextPageToken };
    },

    async getAgentVersion(req, ctx) {
      const repo = new AgentRepository(emOf(ctx), principalOf(ctx));
      const agent = await repo.get(req.agentId);
      return { version: toAgentVersionMessage(await repo.version(agent.id, req.version)) };
    },

    async activateAgentVersion(req, ctx) {
      return inTransaction(ctx, async (repo) => {
        const agent = await repo.getLive(req.agentId);
        checkEtag(req.etag, agent, "agent");
        await repo.activate(agent, req.version);
        return { agent: toAgentMessage(await repo.view(agent)) };
      }, req.etag === "");
    },
  };
}

function stored(templates: PromptTemplate[]): StoredPromptTemplate[] {
  return templates.map((t) => ({ name: t.name, template: t.template }));
}

function promptTemplateViolations(templates: PromptTemplate[]) {
  const seen = new Set<string>();
  return templates.flatMap((t, i) => {
    if (seen.has(t.name)) return [{ field: `agent.prompt_templates[${i}].name`, description: "is used twice" }];
    seen.add(t.name);
    return [];
  });
}

