import type { JsonObject } from "@bufbuild/protobuf";
import { UniqueConstraintViolationException, type FilterQuery } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { roleSatisfies, type Principal } from "../auth/principal.ts";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, PermissionDeniedError } from "../common/errors.ts";
import { likePrefix } from "../db/like.ts";
import { Tool } from "../tools/tool.entity.ts";
import { Agent } from "./agent.entity.ts";
import { AgentTool } from "../bindings/agent-tool.entity.ts";
import { AgentVersion, type StoredPromptTemplate } from "./agent-version.entity.ts";
import { credentialIdsOf } from "../bindings/credential-links.ts";

/** What CreateAgent stores on the agent row. */
export interface AgentFields {
  name: string;
  role: string;
  description: string;
  agentType: string;
  state: string;
  tags: string[];
  capabilities: string[];
  visibility: string;
}

/** The behaviour stored in a version. */
export interface VersionFields {
  config: JsonObject;
  systemPrompt: string;
  promptTemplates: StoredPromptTemplate[];
  changeNote: string;
}

/** Filters and cursor of one ListAgents page. */
export interface AgentPageQuery {
  limit: number;
  orderBy: "createTime" | "name";
  /** Sort key and id of the last agent served. */
  after?: [string, string];
  states: string[];
  includeDeleted: boolean;
  onlyDeleted: boolean;
  agentTypes: string[];
  tags: string[];
  namePrefix: string;
  creator: string;
  visibility: string;
}

/** An agent with what its API view needs. */
export interface AgentView {
  agent: Agent;
  active: AgentVersion | undefined;
  toolIds: string[];
  credentialIds: string[];
}

/**
 * Agent persistence through the request's tenant-scoped EntityManager. On top
 * of the tenant filter it applies visibility: a PRIVATE agent exists only for
 * its creator and the tenant's admins.
 */
export class AgentRepository {
  readonly #em: EntityManager;
  readonly #principal: Principal;

  constructor(em: EntityManager, principal: Principal) {
    this.#em = em;
    this.#principal = principal;
  }

  #visible(): FilterQuery<Agent> {
    return roleSatisfies(this.#principal.role, "admin")
      ? {}
      : { $or: [{ visibility: "TENANT" }, { creator: this.#principal.subject }] };
  }

  /** An agent the caller can see, deleted or not. */
  async get(id: string): Promise<Agent> {
    const agent = await this.#em.findOne(Agent, { $and: [{ id }, this.#visible()] });
    if (!agent) throw new NotFoundError("agent", id);
    return agent;
  }

  /** An agent the caller can see and that is not deleted. */
  async getLive(id: string): Promise<Agent> {
    const agent = await this.get(id);
    if (agent.deleteTime) {
      throw new FailedPreconditionError("the agent is deleted; undelete it first", "AGENT_DELETED", [
        { type: "AGENT_DELETED", subject: `agents/${id}`, description: "call UndeleteAgent first" },
      ]);
    }
    return agent;
  }

  async create(fields: AgentFields, version: VersionFields, toolIds: string[]): Promise<Agent> {
    await this.#requireTools(toolIds);
    const agent = this.#em.create(Agent, { ...fields, creator: this.#principal.subject });
    await this.#flushName(fields.name);
    this.#em.create(AgentVersion, { agentId: agent.id, version: 1, active: true, author: this.#principal.subject, ...version } as AgentVersion);
    for (const toolId of toolIds) {
      this.#em.create(AgentTool, { agentId: agent.id, toolId } as AgentTool);
    }
    await this.#em.flush();
    return agent;
  }

  async list(q: AgentPageQuery): Promise<Agent[]> {
    const and: FilterQuery<Agent>[] = [this.#visible()];
    if (q.onlyDeleted) and.push({ deleteTime: { $ne: null } });
    else if (!q.includeDeleted) and.push({ deleteTime: null });
    if (q.states.length > 0) {
      and.push({ $or: q.states.map((state) => (state === "DELETED" ? { deleteTime: { $ne: null } } : { state, deleteTime: null })) });
    }
    if (q.agentTypes.length > 0) and.push({ agentType: { $in: q.agentTypes } });
    if (q.tags.length > 0) and.push({ tags: { $overlap: q.tags } });
    if (q.namePrefix !== "") and.push({ name: { $like: likePrefix(q.namePrefix) } });
    if (q.creator !== "") and.push({ creator: q.creator });
    if (q.visibility !== "") and.push({ visibility: q.visibility });
    if (q.after) {
      const [key, id] = q.after;
      and.push(
        q.orderBy === "name"
          ? { name: { $gte: key }, $or: [{ name: { $gt: key } }, { name: key, id: { $gt: id } }] }
          : {
              // The redundant bound lets the index scan start at the cursor.
              createTime: { $lte: new Date(key) },
              $or: [{ createTime: { $lt: new Date(key) } }, { createTime: new Date(key), id: { $lt: id } }],
            },
      );
    }
    const orderBy = q.orderBy === "name" ? { name: "asc", id: "asc" } as const : { createTime: "desc", id: "desc" } as const;
    return this.#em.find(Agent, { $and: and }, { orderBy, limit: q.limit });
  }

  /** The active versions, tool ids and credential ids of `agents`, three queries for any number of agents. */
  async views(agents: Agent[]): Promise<AgentView[]> {
    if (agents.length === 0) return [];
    const ids = agents.map((a) => a.id);
    const [versions, links, credentialIds] = await Promise.all([
      this.#em.find(AgentVersion, { agentId: { $in: ids }, active: true }),
      this.#em.find(AgentTool, { agentId: { $in: ids } }, { orderBy: { toolId: "asc" } }),
      credentialIdsOf(this.#em, ids),
    ]);
    return agents.map((agent) => ({
      agent,
      active: versions.find((v) => v.agentId === agent.id),
      toolIds: links.filter((l) => l.agentId === agent.id).map((l) => l.toolId),
      credentialIds: credentialIds.get(agent.id) ?? [],
    }));
  }

  async view(agent: Agent): Promise<AgentView> {
    return (await this.views([agent]))[0]!;
  }

  /**
   * Saves changes to a loaded agent. The agent row is flushed first, so of
   * two updates racing on one etag the second fails its version check
   * (ABORTED) before it writes anything else.
   */
  async save(agent: Agent, newVersion?: VersionFields): Promise<void> {
    agent.updateTime = new Date();
    await this.#flushName(agent.name);
    if (!newVersion) return;
    const latest = await this.#em.findOne(AgentVersion, { agentId: agent.id }, { orderBy: { version: "desc" } });
    await this.#em.nativeUpdate(AgentVersion, { agentId: agent.id, active: true }, { active: false });
    this.#em.create(AgentVersion, {
      agentId: agent.id,
      version: (latest?.version ?? 0) + 1,
      active: true,
      author: this.#principal.subject,
      ...newVersion,
    } as AgentVersion);
    await this.#em.flush();
  }

  async versions(agentId: string, limit: number, beforeVersion?: number): Promise<AgentVersion[]> {
    return this.#em.find(
      AgentVersion,
      { agentId, ...(beforeVersion === undefined ? {} : { version: { $lt: beforeVersion } }) },
      { orderBy: { version: "desc" }, limit },
    );
  }

  async version(agentId: string, version: number): Promise<AgentVersion> {
    const found = await this.#em.findOne(AgentVersion, { agentId, version });
    if (!found) throw new NotFoundError("agent_version", `${agentId}/${version}`);
    return found;
  }

  /** Makes `version` the active one; the agent row is bumped first (etag race). */
  async activate(agent: Agent, version: number): Promise<void> {
    await this.version(agent.id, version);
    agent.updateTime = new Date();
    await this.#em.flush();
    await this.#em.nativeUpdate(AgentVersion, { agentId: agent.id, active: true }, { active: false });
    await this.#em.nativeUpdate(AgentVersion, { agentId: agent.id, version }, { active: true });
  }

  async attachTools(agent: Agent, toolIds: string[]): Promise<void> {
    await this.#requireTools(toolIds);
    const existing = await this.#em.find(AgentTool, { agentId: agent.id, toolId: { $in: toolIds } });
    const have = new Set(existing.map((l) => l.toolId));
    for (const toolId of toolIds.filter((id) => !have.has(id))) {
      this.#em.create(AgentTool, { agentId: agent.id, toolId } as AgentTool);
    }
    agent.updateTime = new Date();
    await this.#em.flush();
  }

  async detachTools(agent: Agent, toolIds: string[]): Promise<void> {
    await this.#em.nativeDelete(AgentTool, { agentId: agent.id, toolId: { $in: toolIds } });
    agent.updateTime = new Date();
    await this.#em.flush();
  }

  async softDelete(agent: Agent, retentionDays: number): Promise<void> {
    const now = new Date();
    agent.deleteTime = now;
    agent.purgeTime = new Date(now.getTime() + retentionDays * 86_400_000);
    await this.save(agent);
  }

  async undelete(agent: Agent): Promise<void> {
    agent.deleteTime = null;
    agent.purgeTime = null;
    await this.save(agent);
  }

  /**
   * Removes a deleted agent for good; versions, links and executions go with
   * it (ON DELETE CASCADE). The delete re-checks that the agent is still
   * deleted, so an undelete that commits first wins over the purge.
   */
  async purge(agent: Agent): Promise<boolean> {
    const removed = await this.#em.nativeDelete(Agent, { id: agent.id, deleteTime: { $ne: null } });
    return removed > 0;
  }

  /**
   * Every id must name a tool of this tenant. A missing tool and another
   * tenant's tool get the same answer, so the error leaks no existence.
   */
  async #requireTools(toolIds: string[]): Promise<void> {
    if (toolIds.length === 0) return;
    const found = await this.#em.find(Tool, { id: { $in: toolIds } }, { fields: ["id"] });
    const known = new Set(found.map((t) => t.id));
    const unknown = toolIds.filter((id) => !known.has(id));
    if (unknown.length > 0) {
      throw new PermissionDeniedError(
        "tools must belong to the caller's tenant",
        "CROSS_TENANT_TOOL",
        { tool_ids: unknown.join(",") },
      );
    }
  }

  async #flushName(name: string): Promise<void> {
    try {
      await this.#em.flush();
    } catch (err) {
      if (err instanceof UniqueConstraintViolationException) {
        throw new AlreadyExistsError(`an agent named ${JSON.stringify(name)} already exists`, "AGENT_NAME_TAKEN", { name });
      }
      throw err;
    }
  }
}
