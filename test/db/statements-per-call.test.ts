import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { clientOf, grpc } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { statementRecorder, type Recorded } from "../support/statements.ts";

/*
 * What one call costs the database: a unary call runs in exactly one
 * transaction, and the statements of a list do not grow with its page (no
 * query per row). Counted from MikroORM's query log of the server's ORM; the
 * rate limiter's bucket take runs before the call's work, on its own, and is
 * left out.
 */

const TENANT = "statements";
const AGENTS = 60;

let s: TestServer;
let agents: Client<typeof AgentService>;
let tools: Client<typeof ToolService>;
let recorder: ReturnType<typeof statementRecorder>;
let agentId = "";
let toolId = "";

beforeAll(async () => {
  // No probe or cache expiry in the middle of a count.
  s = await startTestServer({ DB_PROBE_INTERVAL_MS: "3600000", TENANT_SETTINGS_CACHE_MS: "3600000" });
  const transport = grpc(s.url, await s.token(TENANT, ["admin"]));
  agents = clientOf(AgentService, transport);
  tools = clientOf(ToolService, transport);
  const credentials = clientOf(CredentialService, transport);
  const toolIds: string[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const { tool } = await tools.createTool({ tool: { name: `tool-${String(i).padStart(3, "0")}`, description: "d" } });
    toolIds.push(tool!.id);
  }
  const { credential } = await credentials.createCredential({
    credential: { name: "key", type: CredentialType.API_KEY },
    secret: { value: { case: "apiKey", value: { apiKey: "sk-0123456789abcdef", headerName: "" } } },
  });
  for (let i = 0; i < AGENTS; i++) {
    const { agent } = await agents.createAgent({
      agent: {
        name: `agent-${String(i).padStart(3, "0")}`,
        role: "r",
        agentType: AgentType.WEBHOOK,
        config: { endpoint: "https://example.com/hook" },
        toolIds: [toolIds[i]!, toolIds[(i + 1) % AGENTS]!],
        credentialIds: [credential!.id],
      },
    });
    agentId = agent!.id;
  }
  toolId = toolIds[0]!;
  recorder = statementRecorder(s.orm, [/take_rate_token/]);
}, 120_000);

afterAll(async () => {
  recorder?.restore();
  await s?.close();
});

const record = (work: () => Promise<unknown>): Promise<Recorded> => recorder.record(work);

describe("one transaction per unary call", () => {
  it("getAgent_runsOneReadOnlyTransaction", async () => {
    const { transactions, statements } = await record(() => agents.getAgent({ agentId }));
    expect(transactions, statements.join("\n")).toBe(1);
    expect(statements[0]).toMatch(/read only/);
    // BEGIN, the tenant setting, one SELECT for the agent with its version, tools and credentials, COMMIT.
    expect(statements, statements.join("\n")).toHaveLength(4);
  });

  it("getTool_runsOneTransaction", async () => {
    const { transactions, statements } = await record(() => tools.getTool({ toolId }));
    expect(transactions, statements.join("\n")).toBe(1);
    expect(statements, statements.join("\n")).toHaveLength(4);
  });

  it("createAgent_runsOneTransaction", async () => {
    const { transactions, statements } = await record(() =>
      agents.createAgent({ agent: { name: "one-transaction", role: "r", agentType: AgentType.WEBHOOK, toolIds: [toolId] } }),
    );
    expect(transactions, statements.join("\n")).toBe(1);
  });

  it("updateAgent_withANewVersion_runsOneTransaction", async () => {
    const { agent } = await agents.getAgent({ agentId });
    const { transactions, statements } = await record(() =>
      agents.updateAgent({ agentId, agent: { systemPrompt: "Be brief." }, updateMask: { paths: ["system_prompt"] }, etag: agent!.etag }),
    );
    expect(transactions, statements.join("\n")).toBe(1);
  });
});

describe("statements do not grow with the page", () => {
  it("listAgents_fiftyCostsWhatFiveCosts", async () => {
    const five = await record(() => agents.listAgents({ pageSize: 5 }));
    const fifty = await record(() => agents.listAgents({ pageSize: 50 }));
    expect(fifty.transactions, fifty.statements.join("\n")).toBe(1);
    expect(five.transactions).toBe(1);
    expect(fifty.statements.length, fifty.statements.join("\n")).toBe(five.statements.length);
    expect(fifty.statements).toHaveLength(4);
  });

  it("listTools_fiftyCostsWhatFiveCosts", async () => {
    const five = await record(() => tools.listTools({ pageSize: 5 }));
    const fifty = await record(() => tools.listTools({ pageSize: 50 }));
    expect(fifty.transactions, fifty.statements.join("\n")).toBe(1);
    expect(five.transactions).toBe(1);
    expect(fifty.statements.length, fifty.statements.join("\n")).toBe(five.statements.length);
  });
});
