import type { DescService } from "@bufbuild/protobuf";
import type { OPERATOR_ROLE, Role } from "./principal.ts";

/**
 * What a method needs: a role within the tenant, the platform operator role
 * (outside any tenant), or nothing at all.
 */
export type Requirement = Role | typeof OPERATOR_ROLE | "public";

/**
 * The one table of who may call what, keyed "package.Service/Method".
 * A method missing here is denied to everyone (test/auth walks the service
 * descriptors to keep this table complete).
 */
const policy: Record<string, Requirement> = {
  "grpc.health.v1.Health/Check": "public",
  "grpc.health.v1.Health/Watch": "public",
  "grpc.health.v1.Health/List": "public",
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "public",
  "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "public",

  "agentplatform.v1.ToolService/CreateTool": "editor",
  "agentplatform.v1.ToolService/GetTool": "viewer",
  "agentplatform.v1.ToolService/ListTools": "viewer",
  "agentplatform.v1.ToolService/UpdateTool": "editor",
  "agentplatform.v1.ToolService/DeleteTool": "editor",

  "agentplatform.v1.AgentService/CreateAgent": "editor",
  "agentplatform.v1.AgentService/GetAgent": "viewer",
  "agentplatform.v1.AgentService/ListAgents": "viewer",
  "agentplatform.v1.AgentService/UpdateAgent": "editor",
  "agentplatform.v1.AgentService/DeleteAgent": "editor",
  "agentplatform.v1.AgentService/UndeleteAgent": "editor",
  "agentplatform.v1.AgentService/PurgeAgent": "admin",
  "agentplatform.v1.AgentService/AttachTools": "editor",
  "agentplatform.v1.AgentService/DetachTools": "editor",
  "agentplatform.v1.AgentService/BindCredentials": "editor",
  "agentplatform.v1.AgentService/UnbindCredentials": "editor",
  "agentplatform.v1.AgentService/ListAgentVersions": "viewer",
  "agentplatform.v1.AgentService/GetAgentVersion": "viewer",
  "agentplatform.v1.AgentService/ActivateAgentVersion": "editor",
  "agentplatform.v1.AgentService/CreateAgentTemplate": "editor",
  "agentplatform.v1.AgentService/GetAgentTemplate": "viewer",
  "agentplatform.v1.AgentService/ListAgentTemplates": "viewer",
  "agentplatform.v1.AgentService/DeleteAgentTemplate": "editor",

  "agentplatform.v1.ExecutionService/ExecuteAgent": "editor",
  "agentplatform.v1.ExecutionService/StreamExecuteAgent": "editor",
  "agentplatform.v1.ExecutionService/WatchExecution": "viewer",
  "agentplatform.v1.ExecutionService/GetExecution": "viewer",
  "agentplatform.v1.ExecutionService/ListExecutions": "viewer",
  "agentplatform.v1.ExecutionService/CancelExecution": "editor",
  "agentplatform.v1.ExecutionService/GetExecutionStats": "viewer",
  "agentplatform.v1.ExecutionService/PurgeExecutions": "admin",
  "agentplatform.v1.ExecutionService/GetExecutionRetention": "admin",
  "agentplatform.v1.ExecutionService/UpdateExecutionRetention": "admin",

  "agentplatform.v1.CredentialService/CreateCredential": "admin",
  "agentplatform.v1.CredentialService/GetCredential": "viewer",
  "agentplatform.v1.CredentialService/ListCredentials": "viewer",
  "agentplatform.v1.CredentialService/UpdateCredential": "admin",
  "agentplatform.v1.CredentialService/RotateCredential": "admin",
  "agentplatform.v1.CredentialService/RevokeCredential": "admin",
  "agentplatform.v1.CredentialService/DeleteCredential": "admin",
  "agentplatform.v1.CredentialService/RewrapCredentials": "admin",

  // Operators may call these too (see operatorMethods below).
  "agentplatform.v1.TenantService/GetTenantSettings": "viewer",
  "agentplatform.v1.TenantService/UpdateTenantLimits": "operator",
  "agentplatform.v1.TenantService/SetFeatureToggle": "operator",
};

/**
 * The methods a platform operator may call: they take the tenant they act on
 * in the request's `tenant_id` field, which admission reads. Every
 * other method is out of an operator's reach.
 */
const operatorMethods = new Set([
  "agentplatform.v1.TenantService/GetTenantSettings",
  "agentplatform.v1.TenantService/UpdateTenantLimits",
  "agentplatform.v1.TenantService/SetFeatureToggle",
]);

/** Whether a platform operator may call the method, naming the tenant in `tenant_id`. */
export function operatorMayCall(service: DescService, methodName: string): boolean {
  return operatorMethods.has(`${service.typeName}/${methodName}`);
}

/** The requirement of a method, or undefined when the table does not list it. */
export function requirementOf(service: DescService, methodName: string): Requirement | undefined {
  return policy[`${service.typeName}/${methodName}`];
}
