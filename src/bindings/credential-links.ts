import type { EntityManager } from "@mikro-orm/postgresql";
import { AgentCredential } from "./agent-credential.entity.ts";

// Reads and removals of agent↔credential links that the agents and the
// credentials features both need; the checks that bind (a credential must be
// the caller's) stay with agents/credential-binding.ts.

/** The bound credential ids of each agent, in id order; one query for any number of agents. */
export async function credentialIdsOf(em: EntityManager, agentIds: string[]): Promise<Map<string, string[]>> {
  const byAgent = new Map<string, string[]>(agentIds.map((id) => [id, []]));
  if (agentIds.length === 0) return byAgent;
  const links = await em.find(AgentCredential, { agentId: { $in: agentIds } }, { orderBy: { credentialId: "asc" } });
  for (const link of links) byAgent.get(link.agentId)?.push(link.credentialId);
  return byAgent;
}

/** Agents a credential is bound to, at most `limit`, in id order. */
export async function agentsBoundTo(em: EntityManager, credentialId: string, limit: number): Promise<string[]> {
  const links = await em.find(AgentCredential, { credentialId }, { orderBy: { agentId: "asc" }, limit });
  return links.map((l) => l.agentId);
}

/** Removes every binding of a credential (DeleteCredential with force). */
export async function unbindEverywhere(em: EntityManager, credentialId: string): Promise<void> {
  await em.nativeDelete(AgentCredential, { credentialId });
}
