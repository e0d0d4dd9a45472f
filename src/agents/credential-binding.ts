import type { EntityManager } from "@mikro-orm/postgresql";
import { PermissionDeniedError } from "../common/errors.ts";
import { Credential } from "../credentials/credential.entity.ts";
import { AgentCredential } from "../bindings/agent-credential.entity.ts";
import type { Agent } from "./agent.entity.ts";

/**
 * Which credentials an agent may use, through the request's tenant-scoped
 * EntityManager. Binding needs the editor role, not admin: it hands an agent
 * a secret it will use, never the secret itself.
 */

/**
 * Every id must name a credential of this tenant. A missing credential and
 * another tenant's get the same answer, so the error leaks no existence.
 */
export async function requireCredentials(em: EntityManager, credentialIds: string[]): Promise<void> {
  if (credentialIds.length === 0) return;
  const found = await em.find(Credential, { id: { $in: credentialIds } }, { fields: ["id"] });
  const known = new Set(found.map((c) => c.id));
  const unknown = credentialIds.filter((id) => !known.has(id));
  if (unknown.length > 0) {
    throw new PermissionDeniedError("credentials must belong to the caller's tenant", "CROSS_TENANT_CREDENTIAL", {
      credential_ids: unknown.join(","),
    });
  }
}

/**
 * Links credentials to a new agent, in its creating transaction. The caller
 * checked them with requireCredentials first (so a refusal creates nothing);
 * the composite foreign key would refuse another tenant's id regardless.
 */
export async function linkCredentials(em: EntityManager, agentId: string, credentialIds: string[]): Promise<void> {
  if (credentialIds.length === 0) return;
  for (const credentialId of credentialIds) {
    em.create(AgentCredential, { agentId, credentialId } as AgentCredential);
  }
  await em.flush();
}

/** Binds credentials to a loaded agent; ones already bound are left alone. The agent's etag changes. */
export async function bindCredentials(em: EntityManager, agent: Agent, credentialIds: string[]): Promise<void> {
  await requireCredentials(em, credentialIds);
  const existing = await em.find(AgentCredential, { agentId: agent.id, credentialId: { $in: credentialIds } });
  const have = new Set(existing.map((l) => l.credentialId));
  for (const credentialId of credentialIds.filter((id) => !have.has(id))) {
    em.create(AgentCredential, { agentId: agent.id, credentialId } as AgentCredential);
  }
  agent.updateTime = new Date();
  await em.flush();
}

/** Unbinds credentials from a loaded agent; ones not bound are a no-op. The agent's etag changes. */
export async function unbindCredentials(em: EntityManager, agent: Agent, credentialIds: string[]): Promise<void> {
  await requireCredentials(em, credentialIds);
  await em.nativeDelete(AgentCredential, { agentId: agent.id, credentialId: { $in: credentialIds } });
  agent.updateTime = new Date();
  await em.flush();
}
