import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as net from "node:net";
import type { Client, ConnectError, Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TenantService } from "../../gen/agentplatform/v1/tenant_service_pb.js";
import { ErrorInfoSchema, QuotaFailureSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { mintToken } from "../../src/auth/tokens.ts";
import { bearer, clientOf } from "../support/clients.ts";
import { TEST_SECRET } from "../support/server.ts";

/** The address of the Redis the tests use when it answers. */
export const REDIS_URL = "redis://127.0.0.1:6379";

/** Whether Redis answers PING on 127.0.0.1:6379 (the Redis tests run only then). */
export const redisUp: boolean = await new Promise<boolean>((resolve) => {
  const socket = net.connect(6379, "127.0.0.1");
  const done = (up: boolean) => {
    socket.destroy();
    resolve(up);
  };
  socket.setTimeout(1_000, () => done(false));
  socket.once("error", () => done(false));
  socket.once("connect", () => socket.write("PING\r\n"));
  socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
});

/** A token of a platform operator (role `operator`, no tenant), signed with `secret`. */
export function operatorToken(secret = TEST_SECRET, subject = "ops"): Promise<string> {
  return mintToken(new TextEncoder().encode(secret), { tenants: [], roles: ["operator"], subject, ttl: "10m" });
}

/** Connect JSON over HTTP/1.1 without keep-alive (an idle pooled connection would hold up a server's shutdown). */
export function transportOf(baseUrl: string, token: string, tenant?: string): Transport {
  return createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    useBinaryFormat: false,
    interceptors: [bearer(token, tenant)],
    nodeOptions: { agent: new http.Agent({ keepAlive: false }) },
  });
}

/** TenantService as the holder of `token`. */
export function tenantsAs(baseUrl: string, token: string): Client<typeof TenantService> {
  return clientOf(TenantService, transportOf(baseUrl, token));
}

/** The ErrorInfo reason of a failed call. */
export function reasonOf(err: ConnectError): string | undefined {
  return err.findDetails(ErrorInfoSchema)[0]?.reason;
}

/** The RetryInfo delay of a failed call, in ms. */
export function retryDelayOf(err: ConnectError): number | undefined {
  const delay = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay ? durationMs(delay) : undefined;
}

/** The QuotaFailure violations of a failed call. */
export function quotaViolationsOf(err: ConnectError) {
  return err.findDetails(QuotaFailureSchema)[0]?.violations ?? [];
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A webhook endpoint on 127.0.0.1 that holds every run until released. */
export interface HeldWebhook {
  url: string;
  /** Requests received so far. */
  received(): number;
  /** Answers every held request, and every later one at once. */
  release(): void;
  close(): Promise<void>;
}

/** Starts a HeldWebhook. */
export async function heldWebhook(): Promise<HeldWebhook> {
  let released = false;
  let count = 0;
  const waiting: http.ServerResponse[] = [];
  const answer = (res: http.ServerResponse) =>
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ output: "done" }));
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      count++;
      if (released) answer(res);
      else waiting.push(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received: () => count,
    release() {
      released = true;
      for (const res of waiting.splice(0)) answer(res);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Polls `check` until it is true, failing after `ms`. */
export async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}
