import { randomUUID } from "node:crypto";
import type { Client, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ExecutionStatus } from "../../gen/agentplatform/v1/execution_pb.js";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { QuotaResource, type TenantLimits } from "../../gen/agentplatform/v1/tenant_pb.js";
import { TenantService } from "../../gen/agentplatform/v1/tenant_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { clientOf, Code, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { heldWebhook, operatorToken, quotaViolationsOf, reasonOf, tenantsAs, transportOf, until, type HeldWebhook } from "./support.ts";

/*
 * Per-tenant quotas: live agents, tools, credentials that are not revoked,
 * and executions queued or running. Past a quota a create is
 * RESOURCE_EXHAUSTED with a QuotaFailure (reason QUOTA_EXCEEDED); at the
 * edge, of many concurrent creates exactly the ones that fit pass; another
 * tenant is never affected.
 */

let s: TestServer;
let operator: Client<typeof TenantService>;

beforeAll(async () => {
  s = await startTestServer({ RATE_LIMIT_PER_SECOND: "10000", RATE_LIMIT_BURST: "10000" });
  operator = tenantsAs(s.url, await operatorToken());
});
afterAll(() => s?.close());

/** Sets the tenant's limits named in `limits` (an operator's call). */
async function setLimits(tenant: string, limits: Partial<Omit<TenantLimits, "$typeName">>) {
  const paths = Object.keys(limits).map((k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
  await operator.updateTenantLimits({ tenantId: tenant, limits, updateMask: { paths } });
}

async function clientsOf(tenant: string) {
  const transport = transportOf(s.url, await s.token(tenant, ["admin"]));
  return {
    tools: clientOf(ToolService, transport),
    agents: clientOf(AgentService, transport),
    credentials: clientOf(CredentialService, transport),
    executions: clientOf(ExecutionService, transport),
    tenant: clientOf(TenantService, transport),
  };
}

function expectQuotaExceeded(err: ConnectError, tenant: string, subject: string, limit: number) {
  expect(Code[err.code]).toBe(Code[Code.ResourceExhausted]);
  expect(reasonOf(err)).toBe("QUOTA_EXCEEDED");
  const [violation, ...rest] = quotaViolationsOf(err);
  expect(rest).toEqual([]);
  expect(violation?.subject).toBe(`tenants/${tenant}/${subject}`);
  expect(violation?.description).toContain(`at most ${limit}`);
}

async function usageOf(tenant: string, resource: QuotaResource): Promise<bigint> {
  const { settings } = await operator.getTenantSettings({ tenantId: tenant });
  return settings!.quotaUsage.find((u) => u.resource === resource)!.used;
}

const apiKey = { value: { case: "apiKey" as const, value: { apiKey: "sk-0123456789abcdef", headerName: "" } } };

describe("the tools quota", () => {
  const T = "quota-tools";

  it("refuses the create past it with QuotaFailure, and frees a place when a tool is deleted", async () => {
    await setLimits(T, { maxTools: 2 });
    const { tools } = await clientsOf(T);
    const { tool: first } = await tools.createTool({ tool: { name: "t1", description: "d" } });
    await tools.createTool({ tool: { name: "t2", description: "d" } });
    expectQuotaExceeded(await errorOf(tools.createTool({ tool: { name: "t3", description: "d" } })), T, "tools", 2);
    expect((await tools.listTools({})).tools.map((t) => t.name)).toEqual(["t1", "t2"]);

    await tools.deleteTool({ toolId: first!.id });
    await tools.createTool({ tool: { name: "t3", description: "d" } });
    expect(await usageOf(T, QuotaResource.TOOLS)).toBe(2n);
  });

  it("lets exactly one of many concurrent creates at quota-1 pass", async () => {
    const edge = "quota-tools-edge";
    await setLimits(edge, { maxTools: 3 });
    const { tools } = await clientsOf(edge);
    await tools.createTool({ tool: { name: "e1", description: "d" } });
    await tools.createTool({ tool: { name: "e2", description: "d" } });
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => tools.createTool({ tool: { name: `race-${i}`, description: "d" } })),
    );
    const passed = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(passed).toHaveLength(1);
    expect(refused).toHaveLength(7);
    for (const r of refused) expect(reasonOf(r.reason as ConnectError)).toBe("QUOTA_EXCEEDED");
    expect((await tools.listTools({})).tools).toHaveLength(3);
  });

  it("keeps a retried create (same request_id) answering as the first call did", async () => {
    const T2 = "quota-tools-retry";
    await setLimits(T2, { maxTools: 1 });
    const { tools } = await clientsOf(T2);
    const requestId = randomUUID();
    const { tool } = await tools.createTool({ tool: { name: "once", description: "d" }, requestId });
    const { tool: again } = await tools.createTool({ tool: { name: "once", description: "d" }, requestId });
    expect(again?.id).toBe(tool?.id);
  });
});

describe("the agents quota", () => {
  const T = "quota-agents";

  it("counts live agents: soft-deleting one frees a place, undeleting it past the quota is refused", async () => {
    await setLimits(T, { maxAgents: 1 });
    const { agents } = await clientsOf(T);
    const create = (name: string) => agents.createAgent({ agent: { name, role: "r", agentType: AgentType.WEBHOOK } });
    const { agent: first } = await create("a1");
    expectQuotaExceeded(await errorOf(create("a2")), T, "agents", 1);

    await agents.deleteAgent({ agentId: first!.id });
    await create("a2");
    expectQuotaExceeded(await errorOf(agents.undeleteAgent({ agentId: first!.id })), T, "agents", 1);
    expect(await usageOf(T, QuotaResource.AGENTS)).toBe(1n);
  });

  it("lets exactly one of many concurrent creates at quota-1 pass", async () => {
    const edge = "quota-agents-edge";
    await setLimits(edge, { maxAgents: 2 });
    const { agents } = await clientsOf(edge);
    await agents.createAgent({ agent: { name: "first", role: "r", agentType: AgentType.WEBHOOK } });
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => agents.createAgent({ agent: { name: `race-${i}`, role: "r", agentType: AgentType.WEBHOOK } })),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect((await agents.listAgents({})).agents).toHaveLength(2);
  });
});

describe("the credentials quota", () => {
  const T = "quota-credentials";

  it("counts credentials that are not revoked", async () => {
    await setLimits(T, { maxCredentials: 1 });
    const { credentials } = await clientsOf(T);
    const create = (name: string) =>
      credentials.createCredential({ credential: { name, type: CredentialType.API_KEY }, secret: apiKey });
    const { credential: first } = await create("c1");
    expectQuotaExceeded(await errorOf(create("c2")), T, "credentials", 1);

    await credentials.revokeCredential({ credentialId: first!.id });
    await create("c2");
    expect(await usageOf(T, QuotaResource.CREDENTIALS)).toBe(1n);
  });

  it("lets exactly one of many concurrent creates at quota-1 pass", async () => {
    const edge = "quota-credentials-edge";
    await setLimits(edge, { maxCredentials: 1 });
    const { credentials } = await clientsOf(edge);
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) =>
        credentials.createCredential({ credential: { name: `race-${i}`, type: CredentialType.API_KEY }, secret: apiKey }),
      ),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
  });
});

describe("the concurrent executions quota", () => {
  const T = "quota-executions";
  let hook: HeldWebhook;
  beforeAll(async () => {
    hook = await heldWebhook();
  });
  afterAll(async () => {
    hook.release();
    await hook.close();
  });

  it("refuses a start while the tenant's runs fill it, lets other tenants run, and frees up as runs end", async () => {
    await setLimits(T, { maxConcurrentExecutions: 2 });
    const { agents, executions } = await clientsOf(T);
    const { agent } = await agents.createAgent({
      agent: { name: "held", role: "r", agentType: AgentType.WEBHOOK, config: { endpoint: hook.url } },
    });
    const run = () => executions.executeAgent({ input: { agentId: agent!.id, prompt: "hi" } });

    // Two runs held by the webhook fill the quota.
    const held = [run(), run()];
    await until(async () => hook.received() >= 2, 10_000, "two runs reach the webhook");
    expect(await usageOf(T, QuotaResource.CONCURRENT_EXECUTIONS)).toBe(2n);

    // Of several starts at the full quota none passes, streaming ones included.
    const refused = await Promise.all([errorOf(run()), errorOf(run()), errorOf(drain(executions.streamExecuteAgent({ input: { agentId: agent!.id, prompt: "hi" } })))]);
    for (const err of refused) expectQuotaExceeded(err, T, "concurrent_executions", 2);
    expect(hook.received()).toBe(2);

    // Another tenant is not affected.
    const other = await clientsOf("quota-executions-other");
    const { agent: echo } = await other.agents.createAgent({ agent: { name: "echo", role: "r" }, templateId: "builtin-echo" });
    expect((await other.executions.executeAgent({ input: { agentId: echo!.id, prompt: "hi" } })).execution?.status).toBe(
      ExecutionStatus.SUCCEEDED,
    );

    hook.release();
    for (const result of await Promise.all(held)) expect(result.execution?.status).toBe(ExecutionStatus.SUCCEEDED);
    expect((await run()).execution?.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(await usageOf(T, QuotaResource.CONCURRENT_EXECUTIONS)).toBe(0n);
  });

  it("lets exactly the starts that fit pass when many arrive at once", async () => {
    const edge = "quota-executions-edge";
    await setLimits(edge, { maxConcurrentExecutions: 2 });
    const edgeHook = await heldWebhook();
    try {
      const { agents, executions } = await clientsOf(edge);
      const { agent } = await agents.createAgent({
        agent: { name: "held", role: "r", agentType: AgentType.WEBHOOK, config: { endpoint: edgeHook.url } },
      });
      // The refused answer at once; the two admitted are held until released
      // (only then: a start arriving after a run ended would rightly pass).
      let refusedSoFar = 0;
      const calls = Array.from({ length: 6 }, () =>
        executions.executeAgent({ input: { agentId: agent!.id, prompt: "hi" } }).catch((err: unknown) => {
          refusedSoFar++;
          throw err;
        }),
      );
      const settled = Promise.allSettled(calls);
      await until(async () => edgeHook.received() >= 2 && refusedSoFar >= 4, 20_000, "two runs held, four starts refused");
      edgeHook.release();
      const results = await settled;
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(2);
      for (const r of results) if (r.status === "rejected") expect(reasonOf(r.reason as ConnectError)).toBe("QUOTA_EXCEEDED");
      expect(edgeHook.received()).toBe(2);
    } finally {
      edgeHook.release();
      await edgeHook.close();
    }
  });

  it("answers a retry (same request_id) of a running execution with it, even at the quota", async () => {
    const T2 = "quota-executions-retry";
    await setLimits(T2, { maxConcurrentExecutions: 1 });
    const retryHook = await heldWebhook();
    try {
      const { agents, executions } = await clientsOf(T2);
      const { agent } = await agents.createAgent({
        agent: { name: "held", role: "r", agentType: AgentType.WEBHOOK, config: { endpoint: retryHook.url } },
      });
      const input = { agentId: agent!.id, prompt: "hi", requestId: randomUUID() };
      const first = executions.executeAgent({ input });
      await until(async () => retryHook.received() >= 1, 10_000, "the run reaches the webhook");
      const second = executions.executeAgent({ input });
      retryHook.release();
      const [a, b] = await Promise.all([first, second]);
      expect(b.execution?.id).toBe(a.execution?.id);
      expect(retryHook.received()).toBe(1);
    } finally {
      retryHook.release();
      await retryHook.close();
    }
  });
});

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream);
}
