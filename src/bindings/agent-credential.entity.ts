import { defineEntity, p } from "@mikro-orm/core";
import { tenantIdProperty } from "../db/tenant.ts";

/**
 * The link between an agent and a credential it may use. Plain ids, like
 * AgentTool: the composite foreign keys through tenant_id in the schema keep
 * a link from ever pointing into another tenant, cascade with the agent and
 * hold the credential back from deletion (ON DELETE RESTRICT).
 */
export const AgentCredentialSchema = defineEntity({
  name: "AgentCredential",
  tableName: "agent_credentials",
  properties: {
    tenantId: tenantIdProperty().primary(),
    agentId: p.uuid().primary(),
    credentialId: p.uuid().primary(),
    createTime: p.datetime().onCreate(() => new Date()),
  },
});

export class AgentCredential extends AgentCredentialSchema.class {}
AgentCredentialSchema.setClass(AgentCredential);
