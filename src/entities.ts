import type { EntityManager } from "@mikro-orm/postgresql";
import { Agent } from "./agents/agent.entity.ts";
import { AgentTemplate } from "./agents/agent-template.entity.ts";
import { AgentVersion } from "./agents/agent-version.entity.ts";
import { AgentCredential } from "./bindings/agent-credential.entity.ts";
import { AgentTool } from "./bindings/agent-tool.entity.ts";
import { STORED_REVOKED } from "./credentials/credential-state.ts";
import { Credential } from "./credentials/credential.entity.ts";
import { UNFINISHED } from "./executions/codecs.ts";
import { ExecutionEvent } from "./executions/execution-event.entity.ts";
import { Execution } from "./executions/execution.entity.ts";
import { ExecutionPurge, ExecutionRetention } from "./executions/retention.entity.ts";
import { IdempotencyKey } from "./idempotency/idempotency-key.entity.ts";
import { TenantFeatureToggle } from "./tenants/feature-toggle.entity.ts";
import { TenantSettings } from "./tenants/tenant-settings.entity.ts";
import type { QuotaCounters } from "./tenants/quotas.ts";
import { Tool } from "./tools/tool.entity.ts";

// The composition root's knowledge of every feature's tables: the ORM and
// the quotas are handed these, so db/ and tenants/ import no feature.

/** Every entity the ORM knows. */
export const entities = [Tool, Agent, AgentVersion, AgentTool, AgentTemplate, Credential, AgentCredential, Execution, ExecutionEvent, ExecutionRetention, ExecutionPurge, IdempotencyKey, TenantSettings, TenantFeatureToggle];

/** How many of each quota-bound resource a tenant has now, through its scoped EntityManager. */
export const quotaCounters: QuotaCounters = {
  agents: (em: EntityManager) => em.count(Agent, { deleteTime: null }),
  tools: (em: EntityManager) => em.count(Tool, {}),
  credentials: (em: EntityManager) => em.count(Credential, { state: { $ne: STORED_REVOKED } }),
  concurrentExecutions: (em: EntityManager) => em.count(Execution, { status: { $in: UNFINISHED } }),
};
