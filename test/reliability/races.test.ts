import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentState, AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { clientOf, Code, connectJson, errorOf } from "../support/clients.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * Idempotency (AIP-155) beyond what each service's suite covers, and races:
 * stale etags, one name claimed twice, a delete racing an update. Whatever
 * the interleaving, answers are ABORTED / ALREADY_EXISTS / NOT_FOUND, never
 * INTERNAL, and nothing deleted comes back.
 */

const TENANT = "races";
let s: TestServer;
let tools: ReturnType<typeof clientOf<typeof ToolService>>;
let agents: ReturnType<typeof clientOf<typeof AgentService>>;
let creds: ReturnType<typeof clientOf<typeof CredentialService>>;

beforeAll(async () => {
  s = await startTestServer({ RATE_LIMIT_PER_SECOND: "0" });
  const transport = connectJson(s.url, await s.token(TENANT, ["admin"]));
  tools = clientOf(ToolService, transport);
  agents = clientOf(AgentService, transport);
  creds = clientOf(CredentialService, transport);
});
afterAll(() => s?.close());

/** The codes of the failed results (0 for a success). */
const codesOf = (results: PromiseSettledResult<unknown>[]) =>
  results.map((r) => (r.status === "fulfilled" ? 0 : (r.reason as { code: Code }).code));

const apiKey = (key: string) => ({ value: { case: "apiKey" as const, value: { apiKey: key, headerName: "" } } });

describe("request_id", () => {
  it("CreateTool: a retry returns the tool the first call created (as it is now) and makes no second one", async () => {
    const requestId = randomUUID();
    const request = { tool: { name: "idem-tool", description: "d" }, requestId };
    const { tool } = await tools.createTool(request);
    await tools.updateTool({ toolId: tool!.id, tool: { description: "changed since" }, updateMask: { paths: ["description"] } });
    const { tool: retried } = await tools.createTool(request);
    expect(retried?.id).toBe(tool!.id);
    expect((await tools.listTools({ namePrefix: "idem-tool" })).tools).toHaveLength(1);
  });

  it("CreateTool: six concurrent calls with one request_id make one tool and all get it", async () => {
    const request = { tool: { name: "idem-tool-race", description: "d" }, requestId: randomUUID() };
    const results = await Promise.all(Array.from({ length: 6 }, () => tools.createTool(request)));
    expect(new Set(results.map((r) => r.tool!.id)).size).toBe(1);
    expect((await tools.listTools({ namePrefix: "idem-tool-race" })).tools).toHaveLength(1);
  });

  it.each([
    { what: "CreateTool with another body", other: (id: string) => tools.createTool({ tool: { name: "idem-other", description: "d" }, requestId: id }) },
    {
      what: "CreateAgent with the same request_id",
      other: (id: string) => agents.createAgent({ agent: { name: "idem-other", role: "r", agentType: AgentType.CUSTOM }, requestId: id }),
    },
    {
      what: "CreateCredential with the same request_id",
      other: (id: string) => creds.createCredential({ credential: { name: "idem-other", type: CredentialType.API_KEY }, secret: apiKey("k".repeat(20)), requestId: id }),
    },
  ])("refuses a request_id of a CreateTool reused by $what as ALREADY_EXISTS, creating nothing", async ({ other }) => {
    const requestId = randomUUID();
    await tools.createTool({ tool: { name: `first-${requestId.slice(0, 8)}`, description: "d" }, requestId });
    const err = await errorOf(other(requestId));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("REQUEST_ID_REUSED");
    expect((await tools.listTools({ namePrefix: "idem-other" })).tools).toEqual([]);
    expect((await agents.listAgents({ namePrefix: "idem-other" })).agents).toEqual([]);
    expect((await creds.listCredentials({})).credentials.filter((c) => c.name === "idem-other")).toEqual([]);
  });

  it("CreateAgent: the same request_id with another body is ALREADY_EXISTS, and the first agent stays the only one", async () => {
    const requestId = randomUUID();
    const { agent } = await agents.createAgent({ agent: { name: "idem-agent", role: "r", agentType: AgentType.CUSTOM }, requestId });
    const err = await errorOf(agents.createAgent({ agent: { name: "idem-agent", role: "another role", agentType: AgentType.CUSTOM }, requestId }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("REQUEST_ID_REUSED");
    const { agents: listed } = await agents.listAgents({ namePrefix: "idem-agent" });
    expect(listed.map((a) => [a.id, a.role])).toEqual([[agent!.id, "r"]]);
  });

  it("remembers a request_id for 24 hours: at 23 h a retry still returns the original", async () => {
    const requestId = randomUUID();
    const request = { tool: { name: "idem-23h", description: "d" }, requestId };
    const { tool } = await tools.createTool(request);
    await s.db.sql(`update idempotency_keys set create_time = now() - interval '23 hours' where request_id = '${requestId}'`);
    const { tool: retried } = await tools.createTool(request);
    expect(retried?.id).toBe(tool!.id);
    // Past the window the id is forgotten: it may name a new create.
    await s.db.sql(`update idempotency_keys set create_time = now() - interval '25 hours' where request_id = '${requestId}'`);
    const { tool: fresh } = await tools.createTool({ tool: { name: "idem-25h", description: "d" }, requestId });
    expect(fresh?.id).not.toBe(tool!.id);
  });
});

describe("races", () => {
  it("CreateCredential: of eight concurrent creates with one name, one wins and the rest are ALREADY_EXISTS", async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => creds.createCredential({ credential: { name: "race-cred", type: CredentialType.API_KEY }, secret: apiKey("k".repeat(20)) })),
    );
    expect(codesOf(results).sort()).toEqual([0, ...Array(7).fill(Code.AlreadyExists)]);
  });

  it("UpdateTool: two tools renamed to one free name at once, one wins and the other is ALREADY_EXISTS", async () => {
    for (let round = 0; round < 5; round++) {
      const [a, b] = await Promise.all(["a", "b"].map(async (n) => (await tools.createTool({ tool: { name: `rename-${round}-${n}`, description: "d" } })).tool!));
      const results = await Promise.allSettled(
        [a!, b!].map((t) => tools.updateTool({ toolId: t.id, tool: { name: `renamed-${round}` }, updateMask: { paths: ["name"] } })),
      );
      expect(codesOf(results).sort()).toEqual([0, Code.AlreadyExists]);
    }
  });

  it("UpdateCredential: of concurrent updates with one etag, one wins and the rest are ABORTED", async () => {
    const { credential } = await creds.createCredential({ credential: { name: "etag-cred", type: CredentialType.API_KEY }, secret: apiKey("k".repeat(20)) });
    const results = await Promise.allSettled(
      [1, 2, 3, 4].map((i) =>
        creds.updateCredential({ credentialId: credential!.id, credential: { description: `v${i}` }, updateMask: { paths: ["description"] }, etag: credential!.etag }),
      ),
    );
    expect(codesOf(results).sort()).toEqual([0, Code.Aborted, Code.Aborted, Code.Aborted]);
  });

  it("DeleteTool racing UpdateTool, 25 times: the tool ends deleted every time, never re-created", async () => {
    for (let round = 0; round < 25; round++) {
      const { tool } = await tools.createTool({ tool: { name: `doomed-${round}`, description: "d" } });
      const id = tool!.id;
      const [update, remove] = await Promise.allSettled([
        tools.updateTool({ toolId: id, tool: { description: "updated" }, updateMask: { paths: ["description"] } }),
        tools.deleteTool({ toolId: id }),
      ]);
      expect([0, Code.NotFound, Code.Aborted]).toContain(codesOf([update])[0]);
      expect(codesOf([remove])).toEqual([0]);
      expect((await errorOf(tools.getTool({ toolId: id }))).code).toBe(Code.NotFound);
      expect(await s.db.sql(`select id from tools where id = '${id}'`)).toEqual([]);
    }
  });

  it("DeleteAgent racing UpdateAgent (even one setting the state), 15 times: the agent ends deleted every time", async () => {
    for (let round = 0; round < 15; round++) {
      const { agent } = await agents.createAgent({ agent: { name: `doomed-${round}`, role: "r", agentType: AgentType.CUSTOM, state: AgentState.INACTIVE } });
      const id = agent!.id;
      const [update, remove] = await Promise.allSettled([
        agents.updateAgent({
          agentId: id,
          agent: { description: "updated", state: AgentState.ACTIVE, config: { round } },
          updateMask: { paths: ["description", "state", "config"] },
        }),
        agents.deleteAgent({ agentId: id }),
      ]);
      expect([0, Code.Aborted, Code.FailedPrecondition]).toContain(codesOf([update])[0]);
      expect([0, Code.Aborted]).toContain(codesOf([remove])[0]);
      if (remove.status === "rejected") await agents.deleteAgent({ agentId: id });
      const { agent: final } = await agents.getAgent({ agentId: id });
      expect(final?.state).toBe(AgentState.DELETED);
      expect(final?.deleteTime).toBeDefined();
    }
  });
});
