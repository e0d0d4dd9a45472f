import { Agent } from "../agents/agent.entity.ts";
import { AgentCredential } from "../agents/agent-credential.entity.ts";
import { AgentTemplate } from "../agents/agent-template.entity.ts";
import { AgentTool } from "../agents/agent-tool.entity.ts";
import { AgentVersion } from "../agents/agent-version.entity.ts";
import { Credential } from "../credentials/credential.entity.ts";
import { ExecutionEvent } from "../executions/execution-event.entity.ts";
import { Execution } from "../executions/execution.entity.ts";
import { ExecutionPurge, ExecutionRetention } from "../executions/retention.entity.ts";
import { IdempotencyKey } from "../idempotency/idempotency-key.entity.ts";
import { TenantFeatureToggle } from "../tenants/feature-toggle.entity.ts";
import { TenantSettings } from "../tenants/tenant-settings.entity.ts";
import { Tool } from "../tools/tool.entity.ts";

/** Every entity the ORM knows. */
export const entities = [Tool, Agent, AgentVersion, AgentTool, AgentTemplate, Credential, AgentCredential, Execution, ExecutionEvent, ExecutionRetention, ExecutionPurge, IdempotencyKey, TenantSettings, TenantFeatureToggle];
