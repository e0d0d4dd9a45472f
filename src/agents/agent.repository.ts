import type { JsonObject } from "@bufbuild/protobuf";
import { raw, UniqueConstraintViolationException, type FilterQuery } from "@mikro-orm/core";
import type { EntityManager, QBFilterQuery } from "@mikro-orm/postgresql";
import { roleSatisfies, type Principal } from "../auth/principal.ts";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, PermissionDeniedError } from "../common/errors.ts";
import { likePrefix } from "../db/like.ts";
import { Tool } from "../tools/tool.entity.ts";
import { Agent } from "./agent.entity.ts";
import { AgentTool } from "../bindings/agent-tool.entity.ts";
import { AgentVersion, type StoredPromptTemplate } from "./agent-version.entity.ts";

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

/** The agent columns an API view shows: a loaded entity, or a row read for a view alone. */
export type AgentRow = Omit<Agent, "tenantId">;

/** What an API view shows of the active version. */
export type ActiveVersion = Pick<AgentVersion, "version" | "config" | "systemPrompt" | "promptTemplates">;

/** An agent with what its API view needs. */
export interface AgentView {
  agent: AgentRow;
  active: ActiveVersion | undefined;
  toolIds: string[];
  credentialIds: string[];
}

/*
 * The rest of an agent's view, as columns of the agent's own row: its active
 * version (one at most, a partial unique index says so) and its tool and
 * credential ids. Each sub-select is tied to the agent row by tenant and id,
 * so it stays within the tenant the filter put on that row (and RLS holds
 * it there too). One statement for any number of agents, instead of one
 * statement per table.
 */
const VIEW_COLUMNS = [
  raw(`(select json_build_object('version', v.version, 'config', v.config, 'systemPrompt', v.system_prompt,
          'promptTemplates', v.prompt_templates)
        from agent_versions v where v.tenant_id = a.tenant_id and v.agent_id = a.id and v.active) as "active"`),
  raw(`array(select t.tool_id from agent_tools t where t.tenant_id = a.tenant_id and t.agent_id = a.id
        order by t.tool_id) as "toolIds"`),
  raw(`array(select c.credential_id from agent_credentials c where c.tenant_id = a.tenant_id and c.agent_id = a.id
        order by c.credential_id) as "credentialIds"`),
];

/** A row of the view query: the agent's properties and VIEW_COLUMNS. */
type ViewRow = AgentRow & { active: ActiveVersion | null; toolIds: string[]; credentialIds: string[] };

function viewOf({ active, toolIds, credentialIds, ...agent }: ViewRow): AgentView {
  return { agent, active: active ?? undefined, toolIds, credentialIds };
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

  /**
   * The view of an agent the caller can see, deleted or not, in one
   * statement; a row for the answer alone, which no change tracking follows.
   */
  async getView(id: string): Promise<AgentView> {
    const [row] = await this.#viewRows({ $and: [{ id }, this.#visible()] });
    if (!row) throw new NotFoundError("agent", id);
    return viewOf(row);
  }

  /** One ListAgents page as views, in one statement; rows for the answer alone. */
  async listViews(q: AgentPageQuery): Promise<AgentView[]> {
    const { where, orderBy } = this.#pageQuery(q);
    return (await this.#viewRows(where, orderBy, q.limit)).map(viewOf);
  }

  async #viewRows(where: FilterQuery<Agent>, orderBy?: Record<string, "asc" | "desc">, limit?: number): Promise<ViewRow[]> {
    const qb = this.#em.createQueryBuilder(Agent, "a").select(["a.*", ...VIEW_COLUMNS]).where(where as QBFilterQuery<Agent>);
    if (orderBy) qb.orderBy(orderBy);
    if (limit !== undefined) qb.limit(limit);
    // The tenant filter, as every entity query gets it.
    await qb.applyFilters();
    return (await qb.execute("all")) as unknown as ViewRow[];
  }

  #pageQuery(q: AgentPageQuery): { where: FilterQuery<Agent>; orderBy: Record<string, "asc" | "desc"> } {
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
    const orderBy: Record<string, "asc" | "desc"> = q.orderBy === "name" ? { name: "asc", id: "asc" } : { createTime: "desc", id: "desc" };
    return { where: { $and: and }, orderBy };
  }

  /**
   * The view of a loaded agent (after a write: its fields as written, its
   * version and links as stored now), in one statement. By id alone: a write
   * may just have hidden the agent from its writer (visibility PRIVATE).
   */
  async view(agent: Agent): Promise<AgentView> {
    const qb = this.#em.createQueryBuilder(Agent, "a").select(VIEW_COLUMNS).where({ id: agent.id });
    await qb.applyFilters();
    const [row] = (await qb.execute("all")) as unknown as Omit<ViewRow, keyof AgentRow>[];
    return { agent, active: row?.active ?? undefined, toolIds: row?.toolIds ?? [], credentialIds: row?.credentialIds ?? [] };
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
