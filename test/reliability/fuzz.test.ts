import { runInNewContext } from "node:vm";
import { setFlagsFromString } from "node:v8";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { apiServices } from "../../src/routes.ts";
import { clientOf, connectJson } from "../support/clients.ts";
import {
  corruptUtf8,
  createRng,
  deepStructBinary,
  deepStructJson,
  delimited,
  encodings,
  HOSTILE_STRINGS,
  NUL_STRINGS,
  randomMessage,
  stringFieldPaths,
  withString,
  type Rng,
} from "../support/fuzz.ts";
import { closeRawAgents, connectCall, envelope, grpcSession, type GrpcSession, type RawAnswer } from "../support/raw-wire.ts";
import { rowCounter } from "../support/faults.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

/*
 * Hostile input against every RPC of every API service (walked from the
 * service descriptors, so a new RPC is fuzzed without touching this file):
 * random bytes, truncated protobuf, wrong content types, oversized bodies,
 * 10 000-deep Structs, NUL bytes and invalid UTF-8, absurd page sizes,
 * forged page tokens, SQL- and JSON-operator-shaped strings, random
 * messages. Every answer must be a well-formed status other than UNKNOWN or
 * INTERNAL; a failed call must write nothing; the server must keep
 * answering with flat memory. Seeded: a failure reproduces.
 */

const SEED = 0x7f00_0007;
const TENANT = "fuzz";
// Small, so oversized bodies are cheap to send.
const MAX_MESSAGE_BYTES = 64 * 1024;
// Neither answer says anything about the input; both mean the server failed.
const FORBIDDEN = new Set(["unknown", "internal", "data_loss"]);
// Nothing in this suite is slow or breaks the database.
const UNEXPECTED = new Set(["unavailable", "deadline_exceeded", "canceled"]);

let s: TestServer;
let authorization: Record<string, string>;
let grpc: GrpcSession;
let knownIds: string[];
let countRows: () => Promise<Record<string, number>>;

/** One call that broke the contract. */
interface Violation {
  procedure: string;
  input: string;
  answer: RawAnswer;
  why: string;
}
const violations: Violation[] = [];
let calls = 0;

const procedureOf = (method: DescMethod) => `/${method.parent.typeName}/${method.name}`;
const writes = (method: DescMethod) => method.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
const streaming = (method: DescMethod) => method.methodKind !== "unary";

/** Calls `method` over Connect with `body` (enveloped for streaming methods) and checks the answer. */
async function connect(
  method: DescMethod,
  input: string,
  body: Uint8Array | string,
  format: "proto" | "json",
  expect: { codes?: string[]; allowHttpOnly?: boolean } = {},
): Promise<RawAnswer> {
  const stream = streaming(method);
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const contentType = stream ? `application/connect+${format}` : `application/${format}`;
  const answer = await checkedWrite(method, input, () =>
    connectCall(s.url, procedureOf(method), stream ? envelope(bytes) : bytes, { contentType, headers: authorization }),
  );
  judge(procedureOf(method), `${input} (connect ${format})`, answer, expect);
  return answer;
}

/** Calls `method` over gRPC with an enveloped body. */
async function overGrpc(method: DescMethod, input: string, body: Uint8Array, expect: { codes?: string[] } = {}): Promise<RawAnswer> {
  const answer = await checkedWrite(method, input, () => grpc.call(procedureOf(method), body, authorization));
  judge(procedureOf(method), `${input} (grpc)`, answer, expect);
  return answer;
}

// Row counts as of the last check; undefined once a call succeeded (it may have written).
let baseline: Record<string, number> | undefined;

/** Runs a call of a write method and records a violation when it failed but rows changed. */
async function checkedWrite(method: DescMethod, input: string, call: () => Promise<RawAnswer>): Promise<RawAnswer> {
  calls++;
  if (!writes(method)) return call();
  baseline ??= await countRows();
  const answer = await call();
  if (answer.code === "ok") {
    baseline = undefined;
    return answer;
  }
  const before = baseline;
  const after = (baseline = await countRows());
  const changed = Object.keys(after).filter((t) => after[t] !== before[t]);
  if (changed.length) {
    violations.push({ procedure: procedureOf(method), input, answer, why: `a failed call changed rows of ${changed.join(", ")}` });
  }
  return answer;
}

function judge(procedure: string, input: string, answer: RawAnswer, expect: { codes?: string[]; allowHttpOnly?: boolean }): void {
  const code = answer.code;
  if (code === undefined) {
    if (!expect.allowHttpOnly) violations.push({ procedure, input, answer, why: "no RPC status" });
    return;
  }
  if (FORBIDDEN.has(code) || UNEXPECTED.has(code)) violations.push({ procedure, input, answer, why: `status ${code}` });
  else if (expect.codes && !expect.codes.includes(code)) violations.push({ procedure, input, answer, why: `expected ${expect.codes.join("/")}` });
  if (/\bselect\b.*\bfrom\b|insert into|\bupdate\b.*\bset\b|delete from|violates|constraint|relation "|syntax error/i.test(answer.message)) {
    violations.push({ procedure, input, answer, why: "SQL or a constraint on the wire" });
  }
}

/** Fails the test with the violations so far, named by procedure and input. */
function expectNoViolations(): void {
  const report = violations.splice(0).map((v) => `${v.procedure} ← ${v.input}: ${v.why}; got ${JSON.stringify(v.answer)}`);
  expect(report).toEqual([]);
}

/** Messages of every string field set to `value`, next to random other fields. */
function stringsSetTo(method: DescMethod, rng: Rng, value: string): Record<string, unknown>[] {
  const base = randomMessage(method.input, rng, { hostile: 0, nul: false, knownIds, maxLength: 40 });
  return stringFieldPaths(method.input).map((path) => withString(base, path, value));
}

const methods = (service: DescService) => service.methods;

/** Heap in use after a full garbage collection. */
function heapAfterGc(): number {
  setFlagsFromString("--expose_gc");
  const gc = runInNewContext("gc") as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
let heapBaseline = 0;
let rssBaseline = 0;

/** `n` calls of random methods with random bytes or random messages. */
async function hostileRound(rng: Rng, n: number): Promise<void> {
  const all = apiServices.flatMap(methods);
  for (let i = 0; i < n; i++) {
    const method = rng.pick(all);
    const encoded = encodings(method.input, randomMessage(method.input, rng, { hostile: 0.5, nul: true, knownIds }));
    const raw = rng.chance(0.3) || !encoded;
    const json = !raw && rng.chance(0.5);
    const bytes = raw ? rng.bytes(rng.int(300)) : json ? new TextEncoder().encode(encoded.json) : encoded.binary;
    const format = json ? "json" : "proto";
    const contentType = streaming(method) ? `application/connect+${format}` : `application/${format}`;
    const answer = await connectCall(s.url, procedureOf(method), streaming(method) ? envelope(bytes) : bytes, {
      contentType,
      headers: authorization,
    });
    calls++;
    judge(procedureOf(method), `hostile round (${raw ? "random bytes" : format})`, answer, {});
  }
  baseline = undefined;
}

beforeAll(async () => {
  s = await startTestServer({
    MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
    // Thousands of calls from one tenant: the rate limit (0: none) is not under test here.
    RATE_LIMIT_PER_SECOND: "0",
  });
  const token = await s.token(TENANT, ["admin"]);
  authorization = { authorization: `Bearer ${token}` };
  grpc = grpcSession(s.url);

  const transport = connectJson(s.url, token);
  const { tool } = await clientOf(ToolService, transport).createTool({ tool: { name: "fuzz-tool", description: "d" } });
  const { agent } = await clientOf(AgentService, transport).createAgent({
    agent: { name: "fuzz-agent", role: "echo" },
    templateId: "builtin-echo",
  });
  const { credential } = await clientOf(CredentialService, transport).createCredential({
    credential: { name: "fuzz-credential", type: CredentialType.API_KEY },
    secret: { value: { case: "apiKey", value: { apiKey: "k".repeat(20), headerName: "" } } },
  });
  const { execution } = await clientOf(ExecutionService, transport).executeAgent({ input: { agentId: agent!.id, prompt: "hi" } });
  knownIds = [tool!.id, agent!.id, credential!.id, execution!.id, "builtin-echo", "00000000-0000-4000-8000-000000000000"];

  countRows = await rowCounter(s.db.sql);

  // Warm up (JIT, pools, caches), then the baseline the last test compares with.
  await hostileRound(createRng(SEED - 1), 150);
  violations.length = 0;
  calls = 0;
  heapBaseline = heapAfterGc();
  rssBaseline = process.memoryUsage().rss;
}, 60_000);

afterAll(async () => {
  grpc?.close();
  closeRawAgents();
  await s?.close();
});

describe.each(apiServices.map((service) => ({ service, name: service.typeName })))("$name under hostile input", ({ service }) => {
  it("answers random bytes, truncated protobuf and random JSON with a clean status, over Connect and gRPC", async () => {
    const rng = createRng(SEED ^ service.typeName.length);
    for (const method of methods(service)) {
      for (let i = 0; i < 2; i++) {
        const noise = rng.bytes(rng.pick([1, 7, 64, 900]));
        await connect(method, `random bytes #${i}`, noise, "proto");
        await connect(method, `random bytes as JSON #${i}`, noise, "json");
        await overGrpc(method, `random bytes #${i}`, envelope(noise));
      }
      for (let i = 0; i < 2; i++) {
        const encoded = encodings(method.input, randomMessage(method.input, rng, { hostile: 0.3, nul: false, knownIds }));
        if (!encoded || encoded.binary.length < 2) continue;
        const cut = 1 + rng.int(encoded.binary.length - 1);
        await connect(method, `protobuf truncated at ${cut}/${encoded.binary.length}`, encoded.binary.subarray(0, cut), "proto");
        await connect(method, `JSON truncated`, encoded.json.slice(0, Math.max(1, encoded.json.length >> 1)), "json");
        // An envelope that promises more bytes than it carries.
        await overGrpc(method, "envelope promising more bytes", envelope(encoded.binary, 0, encoded.binary.length + 10));
      }
      await connect(method, "a JSON array", "[1,2,3]", "json");
      await connect(method, "JSON null", "null", "json");
    }
    expectNoViolations();
  });

  it("refuses wrong content types and oversized messages without reading them as requests", async () => {
    for (const method of methods(service)) {
      const procedure = procedureOf(method);
      for (const contentType of ["text/plain", "application/xml", "application/x-www-form-urlencoded", "application/grpc+json"]) {
        const answer = await connectCall(s.url, procedure, "{}", { contentType, headers: authorization });
        calls++;
        judge(procedure, `content-type ${contentType}`, answer, { allowHttpOnly: true });
        if (answer.code === undefined) expect([404, 405, 415]).toContain(answer.http);
      }
      const huge = new Uint8Array(MAX_MESSAGE_BYTES + 1).fill(0x20);
      await connect(method, "one byte past MAX_MESSAGE_BYTES", huge, "json", { codes: ["resource_exhausted"] });
      // The refused body was not read: the next call (on a fresh or reused connection) must not stall behind it.
      const started = Date.now();
      const next = await connectCall(s.url, procedure, streaming(method) ? envelope(new Uint8Array(0)) : "{}", {
        contentType: streaming(method) ? "application/connect+json" : "application/json",
        headers: authorization,
      });
      calls++;
      baseline = undefined;
      judge(procedure, "the call after an oversized body", next, {});
      expect(Date.now() - started).toBeLessThan(2000);
      await overGrpc(method, "one byte past MAX_MESSAGE_BYTES", envelope(huge), { codes: ["resource_exhausted"] });
      // An envelope that claims 4 GiB: refused from its header, not buffered.
      await overGrpc(method, "envelope claiming 4 GiB", envelope(new Uint8Array(8), 0, 0xffffffff), { codes: ["resource_exhausted"] });
    }
    expectNoViolations();
  });

  it("refuses 10 000-deep Structs and invalid UTF-8 with INVALID_ARGUMENT (or as too large), and NUL bytes cleanly", async () => {
    const rng = createRng(SEED + 1);
    // Binary Structs this deep are bigger than the test's MAX_MESSAGE_BYTES; either refusal is clean.
    const tooDeep = { codes: ["invalid_argument", "resource_exhausted"] };
    for (const method of methods(service)) {
      for (const field of method.input.fields.filter((f) => f.fieldKind === "message")) {
        if (field.message.typeName === "google.protobuf.Struct") {
          const json = `{"${field.jsonName}":${deepStructJson(10_000)}}`;
          await connect(method, `10 000-deep ${field.name}`, json, "json", tooDeep);
          const binary = delimited((field.number << 3) | 2, deepStructBinary(10_000));
          await connect(method, `10 000-deep ${field.name}`, binary, "proto", tooDeep);
          await overGrpc(method, `10 000-deep ${field.name}`, envelope(binary), tooDeep);
        }
        // Structs one level down (agent.config, tool.parameters, input.input).
        for (const inner of field.message.fields.filter((f) => f.fieldKind === "message" && f.message.typeName === "google.protobuf.Struct")) {
          const json = `{"${field.jsonName}":{"${inner.jsonName}":${deepStructJson(10_000)}}}`;
          await connect(method, `10 000-deep ${field.name}.${inner.name}`, json, "json", tooDeep);
          const binary = delimited((field.number << 3) | 2, delimited((inner.number << 3) | 2, deepStructBinary(10_000)));
          await connect(method, `10 000-deep ${field.name}.${inner.name}`, binary, "proto", tooDeep);
        }
      }
      const marker = "\uE000MARK\uE000";
      for (const nul of NUL_STRINGS) {
        for (const init of stringsSetTo(method, rng, nul)) {
          const encoded = encodings(method.input, init);
          if (!encoded) continue;
          // Refused by validation (or by auth, which comes first), never sent to the database.
          await connect(method, `NUL in a string: ${encoded.json.slice(0, 120)}`, encoded.json, "json", {
            codes: ["invalid_argument", "permission_denied", "unimplemented"],
          });
        }
      }
      for (const init of stringsSetTo(method, rng, marker)) {
        const encoded = encodings(method.input, init);
        if (!encoded) continue;
        const invalid = corruptUtf8(encoded.binary, marker);
        await connect(method, `invalid UTF-8 in a string`, invalid, "proto", { codes: ["invalid_argument"] });
        await overGrpc(method, `invalid UTF-8 in a string`, envelope(invalid), { codes: ["invalid_argument"] });
      }
    }
    expectNoViolations();
  });

  it("answers absurd page sizes, forged page tokens and SQL- or JSON-operator-shaped strings in every field cleanly", async () => {
    const rng = createRng(SEED + 2);
    for (const method of methods(service)) {
      const fields = method.input.fields.map((f) => f.localName);
      if (fields.includes("pageSize")) {
        for (const pageSize of [-1, -2147483648, 2147483647, 1_000_000]) {
          const encoded = encodings(method.input, { pageSize });
          await connect(method, `page_size ${pageSize}`, encoded!.json, "json", { codes: ["ok", "invalid_argument", "permission_denied"] });
        }
      }
      if (fields.includes("pageToken")) {
        const forged = [
          "x",
          "..",
          "a.b.c",
          "eyJxIjoiIiwiYyI6WyInIE9SIDE9MS0tIl19.AAAA",
          Buffer.from(JSON.stringify({ q: "x", c: ["' OR 1=1 --"] })).toString("base64url") + "." + "A".repeat(43),
          "%".repeat(500),
          "A".repeat(20_000),
        ];
        for (const pageToken of forged) {
          const encoded = encodings(method.input, { pageToken });
          await connect(method, `page_token ${pageToken.slice(0, 40)}`, encoded!.json, "json", { codes: ["invalid_argument", "permission_denied"] });
        }
      }
      // Every hostile string in every field of a List (the filters); a few in each field elsewhere.
      const hostiles = method.name.startsWith("List") ? HOSTILE_STRINGS : [0, 1, 2].map(() => rng.pick(HOSTILE_STRINGS));
      for (const hostile of hostiles) {
        for (const init of stringsSetTo(method, rng, hostile)) {
          const encoded = encodings(method.input, init);
          if (encoded) await connect(method, `hostile string ${JSON.stringify(hostile)}`, encoded.json, "json");
        }
      }
    }
    expectNoViolations();
  });

  it("answers random well-typed messages (JSON and protobuf) with clean statuses", async () => {
    const rng = createRng(SEED + 3);
    for (const method of methods(service)) {
      for (let i = 0; i < 6; i++) {
        const encoded = encodings(method.input, randomMessage(method.input, rng, { hostile: 0.4, nul: true, knownIds }));
        if (!encoded) continue;
        if (rng.chance(0.5)) await connect(method, `random message ${encoded.json.slice(0, 160)}`, encoded.json, "json");
        else await connect(method, `random message ${encoded.json.slice(0, 160)}`, encoded.binary, "proto");
      }
    }
    expectNoViolations();
  });
});

describe("after the fuzzing", () => {
  it("still answers health, with memory as flat as before the thousands of calls above", async () => {
    await hostileRound(createRng(SEED + 5), 300);
    const after = heapAfterGc();
    const rss = process.memoryUsage().rss;
    expectNoViolations();
    console.log(
      `fuzz: ${calls} calls since the baseline; heap ${mib(heapBaseline)} → ${mib(after)} MiB, rss ${mib(rssBaseline)} → ${mib(rss)} MiB`,
    );
    // Generous: thousands of calls leaking even 10 KiB each would pass it.
    expect(after - heapBaseline).toBeLessThan(32 * 2 ** 20);

    const health = await connectCall(s.url, "/grpc.health.v1.Health/Check", "{}", { contentType: "application/json" });
    expect(health).toMatchObject({ http: 200, code: "ok" });
  });
});
