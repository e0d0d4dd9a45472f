import { ForeignKeyConstraintViolationException, UniqueConstraintViolationException } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { AgentTool } from "../bindings/agent-tool.entity.ts";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from "../common/errors.ts";
import { likePrefix } from "../db/like.ts";
import { Tool, type JsonObject } from "./tool.entity.ts";

/** The fields a client sets on a tool. */
export interface ToolFields {
  name: string;
  description: string;
  parameters: JsonObject | null;
}

/** One page of tools in name order. */
export interface ToolPageQuery {
  /** Rows to return. */
  limit: number;
  /** Name of the last tool of the previous page. */
  afterName?: string;
  /** Only names starting with this. */
  namePrefix: string;
}

// How many agents a FAILED_PRECONDITION lists at most.
const MAX_LISTED_AGENTS = 20;

/** Tool persistence, always through the request's tenant-scoped EntityManager. */
export class ToolRepository {
  readonly #em: EntityManager;

  constructor(em: EntityManager) {
    this.#em = em;
  }

  async create(fields: ToolFields): Promise<Tool> {
    const tool = this.#em.create(Tool, fields);
    await this.#flushUnique(fields.name);
    return tool;
  }

  async get(id: string): Promise<Tool> {
    const tool = await this.#em.findOne(Tool, { id });
    if (!tool) throw new NotFoundError("tool", id);
    return tool;
  }

  async list(query: ToolPageQuery): Promise<Tool[]> {
    return this.#em.find(
      Tool,
      {
        $and: [
          query.afterName === undefined ? {} : { name: { $gt: query.afterName } },
          query.namePrefix === "" ? {} : { name: { $like: likePrefix(query.namePrefix) } },
        ],
      },
      { orderBy: { name: "asc" }, limit: query.limit },
    );
  }

  /** Applies `fields` to a tool loaded through this repository. */
  async update(tool: Tool, fields: Partial<ToolFields>): Promise<Tool> {
    this.#em.assign(tool, fields);
    await this.#flushUnique(tool.name);
    return tool;
  }

  /** Deletes a loaded tool unless an agent still uses it. */
  async delete(tool: Tool): Promise<void> {
    await this.#refuseWhileAttached(tool.id);
    this.#em.remove(tool);
    try {
      await this.#em.flush();
    } catch (err) {
      // An agent attached it between the check and the delete: the
      // foreign key (ON DELETE RESTRICT) has the last word.
      if (err instanceof ForeignKeyConstraintViolationException) {
        await this.#refuseWhileAttached(tool.id, this.#em.fork());
      }
      throw err;
    }
  }

  async #refuseWhileAttached(toolId: string, em: EntityManager = this.#em): Promise<void> {
    const links = await em.find(AgentTool, { toolId }, { limit: MAX_LISTED_AGENTS, orderBy: { agentId: "asc" } });
    if (links.length === 0) return;
    throw new FailedPreconditionError(
      "the tool is attached to agents; detach it from them first",
      "TOOL_IN_USE",
      links.map((l) => ({
        type: "TOOL_IN_USE",
        subject: `agents/${l.agentId}`,
        description: "this agent uses the tool; detach it with AgentService.DetachTools",
      })),
    );
  }

  async #flushUnique(name: string): Promise<void> {
    try {
      await this.#em.flush();
    } catch (err) {
      if (err instanceof UniqueConstraintViolationException) {
        throw new AlreadyExistsError(`a tool named ${JSON.stringify(name)} already exists`, "TOOL_NAME_TAKEN", { name });
      }
      throw err;
    }
  }
}
