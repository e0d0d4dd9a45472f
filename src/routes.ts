import type { DescService } from "@bufbuild/protobuf";
import { AgentService } from "../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialService } from "../gen/agentplatform/v1/credential_service_pb.js";
import { ExecutionService } from "../gen/agentplatform/v1/execution_service_pb.js";
import { TenantService } from "../gen/agentplatform/v1/tenant_service_pb.js";
import { ToolService } from "../gen/agentplatform/v1/tool_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { PageTokens } from "./common/page-token.ts";
import type { HealthState } from "./platform/health.ts";
import type { ServiceEntry } from "./pipeline/service-entry.ts";
import { reflectionServices } from "./platform/reflection.ts";
import { agentHandler } from "./agents/agent.handler.ts";
import { credentialBindingHandler } from "./agents/credential-binding.handler.ts";
import { templateHandler } from "./agents/template.handler.ts";
import { credentialHandler } from "./credentials/credential.handler.ts";
import type { Keyring } from "./credentials/keyring.ts";
import { executionHandler, type ExecutionDeps } from "./executions/execution.handler.ts";
import type { Limits } from "./tenants/limits.ts";
import type { Quotas } from "./tenants/quotas.ts";
import { tenantHandler, type TenantDeps } from "./tenants/tenant.handler.ts";
import { toolHandler } from "./tools/tool.handler.ts";

/** The platform's own services, in the order the README lists them. */
export const apiServices: DescService[] = [AgentService, ToolService, ExecutionService, CredentialService, TenantService];

/** Every service the server answers, including health and reflection. */
export const allServices: DescService[] = [...apiServices, Health, ReflectionV1, ReflectionV1alpha];

/** What the handlers need. */
export interface RouteDeps {
  pageTokens: PageTokens;
  health: HealthState;
  /** Days a soft-deleted agent is kept before it is purged. */
  agentRetentionDays: number;
  /** Key-encryption keys of credentials; the primary wraps new data keys. */
  keyring: Keyring;
  /** The runner and what starting executions needs. */
  executions: Omit<ExecutionDeps, "pageTokens">;
  /** The tenants' quotas, checked by the creates they bound. */
  quotas: Quotas;
  /** The configured default limits of every tenant. */
  tenantLimits: Limits;
  /** The request rate limiter, told when an operator changes a tenant's limits. */
  limiter: TenantDeps["limiter"];
}

/**
 * Every service with its implementation, what both transport paths serve
 * (pipeline/connect/ and pipeline/grpc/). RPCs not built yet are left out of
 * their implementation, so they answer UNIMPLEMENTED (and are listed by
 * reflection).
 */
export function routes(deps: RouteDeps): ServiceEntry[] {
  const reflection = reflectionServices(allServices);
  return [
    { service: ToolService, impl: toolHandler(deps) },
    { service: AgentService, impl: { ...agentHandler(deps), ...templateHandler(deps), ...credentialBindingHandler() } },
    { service: ExecutionService, impl: executionHandler({ ...deps.executions, pageTokens: deps.pageTokens }) },
    { service: CredentialService, impl: credentialHandler(deps) },
    { service: TenantService, impl: tenantHandler(deps) },
    { service: Health, impl: deps.health.service },
    { service: ReflectionV1, impl: reflection.v1 },
    { service: ReflectionV1alpha, impl: reflection.v1alpha },
  ];
}
