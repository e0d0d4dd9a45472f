import { UniqueConstraintViolationException } from "@mikro-orm/core";
import type { EntityManager } from "@mikro-orm/postgresql";
import { AlreadyExistsError, NotFoundError } from "../common/errors.ts";
import { AgentTemplate } from "./agent-template.entity.ts";
import { builtinTemplate, type BuiltinTemplate } from "./builtin-templates.ts";

/** A template as CreateAgent uses it, built-in or the tenant's own. */
export type AnyTemplate = { builtIn: true; template: BuiltinTemplate } | { builtIn: false; template: AgentTemplate };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Tenant templates through the request's EntityManager, and lookup of built-in ones. */
export class AgentTemplateRepository {
  readonly #em: EntityManager;

  constructor(em: EntityManager) {
    this.#em = em;
  }

  /** A built-in template by its name-like id, or a tenant template by UUID. */
  async get(id: string): Promise<AnyTemplate> {
    const builtin = builtinTemplate(id);
    if (builtin) return { builtIn: true, template: builtin };
    const own = UUID.test(id) ? await this.#em.findOne(AgentTemplate, { id }) : null;
    if (!own) throw new NotFoundError("agent_template", id);
    return { builtIn: false, template: own };
  }

  async create(fields: Omit<AgentTemplate, "id" | "tenantId" | "createTime">): Promise<AgentTemplate> {
    const template = this.#em.create(AgentTemplate, fields as AgentTemplate);
    try {
      await this.#em.flush();
    } catch (err) {
      if (err instanceof UniqueConstraintViolationException) {
        throw new AlreadyExistsError(`a template named ${JSON.stringify(fields.name)} already exists`, "TEMPLATE_NAME_TAKEN", {
          name: fields.name,
        });
      }
      throw err;
    }
    return template;
  }

  /** Tenant templates in name order after `afterName`. */
  async list(limit: number, afterName?: string): Promise<AgentTemplate[]> {
    return this.#em.find(
      AgentTemplate,
      afterName === undefined ? {} : { name: { $gt: afterName } },
      { orderBy: { name: "asc" }, limit },
    );
  }

  async delete(id: string): Promise<void> {
    const template = await this.#em.findOne(AgentTemplate, { id });
    if (!template) throw new NotFoundError("agent_template", id);
    this.#em.remove(template);
    await this.#em.flush();
  }
}
