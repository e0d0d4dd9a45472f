import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ExecutionService, StatsBucketSize } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { ExecutionStatsBucketSchema, UsageSchema, type Usage } from "../../gen/agentplatform/v1/execution_pb.js";
import { roleSatisfies } from "../auth/principal.ts";
import { emOf, principalOf } from "../call-context.ts";
import { InvalidArgumentError } from "../common/errors.ts";
import { pageSizeOf, type PageTokens } from "../common/page-token.ts";
import { toTimestamp } from "../common/time.ts";
import { tenantOf } from "../db/tenant.ts";
import type { CancelBus } from "./cancel-bus.ts";
import { executionStatus } from "./codecs.ts";
import type { Execution } from "./execution.entity.ts";
import { toExecutionMessage } from "./execution.mapper.ts";
import { ExecutionRepository } from "./execution.repository.ts";
import { finished, followExecution } from "./follow.ts";
import { purgeExecutions, recentPurges, retentionDays, setRetentionDays } from "./retention.ts";
import { startExecution, type StartDeps } from "./start.ts";
import { executionStats, type BucketUnit, type StatsRow } from "./stats.ts";
import type { ExecutionPurge } from "./retention.entity.ts";

/** What the execution handlers need. */
export interface ExecutionDeps extends StartDeps {
  pageTokens: PageTokens;
  cancelBus: CancelBus;
}

const UNITS: Record<number, BucketUnit> = {
  [StatsBucketSize.UNSPECIFIED]: "hour",
  [StatsBucketSize.MINUTE]: "minute",
  [StatsBucketSize.HOUR]: "hour",
  [StatsBucketSize.DAY]: "day",
};
// Most buckets one stats call may return.
const MAX_BUCKETS = 10_000;

/** ExecutionService over the request's EntityManager and this instance's runner. */
export function executionHandler(deps: ExecutionDeps): ServiceImpl<typeof ExecutionService> {
  const admin = (ctx: HandlerContext) => roleSatisfies(principalOf(ctx).role, "admin");

  return {
    async executeAgent(req, ctx) {
      const { execution, run } = await startExecution(ctx, req.input!, deps);
      const repo = new ExecutionRepository(emOf(ctx));
      const done = await finished(repo, execution.id, run, ctx.signal);
      return { execution: toExecutionMessage(done, { admin: admin(ctx) }) };
    },

    async *streamExecuteAgent(req, ctx) {
      const { execution, run } = await startExecution(ctx, req.input!, deps);
      const repo = new ExecutionRepository(emOf(ctx));
      for await (const event of followExecution(repo, execution.id, run, 0, ctx.signal)) {
        yield { event };
      }
    },

    async *watchExecution(req, ctx) {
      const repo = new ExecutionRepository(emOf(ctx));
      const execution = await repo.get(req.executionId);
      const run = deps.runner.local(execution.id);
      for await (const event of followExecution(repo, execution.id, run, Number(req.afterSequence), ctx.signal)) {
        yield { event };
      }
    },

    async getExecution(req, ctx) {
      const repo = new ExecutionRepository(emOf(ctx));
      const root = await repo.get(req.executionId);
      return { execution: toTree(root, await repo.descendants(root.id), admin(ctx)) };
    },

    async listExecutions(req, ctx) {
      const em = emOf(ctx);
      const limit = pageSizeOf(req.pageSize);
      const from = req.startTime ? timestampDate(req.startTime) : undefined;
      const to = req.endTime ? timestampDate(req.endTime) : undefined;
      const filters = {
        agentId: req.agentId,
        statuses: req.statuses.map((s) => executionStatus.toDb(s)).sort(),
        sessionId: req.sessionId,
        model: req.model,
        from,
        to,
      };
      const query = { rpc: "ListExecutions", ...filters, from: from?.toISOString(), to: to?.toISOString() };
      const cursor = deps.pageTokens.decode(tenantOf(em), query, req.pageToken);
      const rows = await new ExecutionRepository(em).list({
        ...filters,
        limit: limit + 1,
        after: cursor ? [String(cursor[0]), String(cursor[1])] : undefined,
      });
      const { page, nextPageToken } = deps.pageTokens.nextPage(tenantOf(em), query, rows, limit, (last) => [
        last.createTime.toISOString(),
        last.id,
      ]);
      return { executions: page.map((e) => toExecutionMessage(e, { admin: admin(ctx) })), nextPageToken };
    },

    async cancelExecution(req, ctx) {
      const em = emOf(ctx);
      const repo = new ExecutionRepository(em);
      const execution = await repo.get(req.executionId);
      if (await repo.cancel(execution.id)) {
        await deps.cancelBus.publish(em, execution.id);
      }
      return { execution: toExecutionMessage(await repo.reload(execution.id), { admin: admin(ctx) }) };
    },

    async getExecutionStats(req, ctx) {
      const from = timestampDate(req.startTime!);
      const to = timestampDate(req.endTime!);
      if (to <= from) {
        throw new InvalidArgumentError([{ field: "end_time", description: "must be after start_time" }]);
      }
      const unit = UNITS[req.bucketSize]!;
      const unitMs = { minute: 60_000, hour: 3_600_000, day: 86_400_000 }[unit];
      // The UTC buckets the range touches (the end is exclusive).
      const touched = Math.floor((to.getTime() - 1) / unitMs) - Math.floor(from.getTime() / unitMs) + 1;
      if (touched > MAX_BUCKETS) {
        throw new InvalidArgumentError([
          { field: "bucket_size", description: `the range spans more than ${MAX_BUCKETS} buckets; use a larger bucket` },
        ]);
      }
      const em = emOf(ctx);
      const range = { from, to, agentId: req.agentId };
      // Both in the call's transaction (a plain fork would take a second connection).
      const [buckets, [total]] = await Promise.all([
        executionStats(em, range, unit),
        executionStats(em.fork({ keepTransactionContext: true }), range, undefined),
      ]);
      return { buckets: buckets.map(toBucket), total: total ? toBucket(total) : undefined };
    },

    async purgeExecutions(req, ctx) {
      const purge = await purgeExecutions(emOf(ctx), timestampDate(req.olderThan!), principalOf(ctx).subject);
      return { purge: toPurge(purge) };
    },

    async getExecutionRetention(_req, ctx) {
      const em = emOf(ctx);
      return { retentionDays: await retentionDays(em), recentPurges: (await recentPurges(em)).map(toPurge) };
    },

    async updateExecutionRetention(req, ctx) {
      await setRetentionDays(emOf(ctx), req.retentionDays);
      return { retentionDays: req.retentionDays };
    },
  };
}

/** An execution with its descendants nested under their parents, usage rolled up. */
function toTree(root: Execution, descendants: Execution[], admin: boolean) {
  const build = (e: Execution): ReturnType<typeof toExecutionMessage> => {
    const children = descendants.filter((d) => d.parentExecutionId === e.id).map(build);
    const totalUsage = children.reduce<Usage>(
      (sum, c) =>
        create(UsageSchema, {
          inputTokens: sum.inputTokens + (c.totalUsage?.inputTokens ?? 0n),
          outputTokens: sum.outputTokens + (c.totalUsage?.outputTokens ?? 0n),
          costMicrosUsd: sum.costMicrosUsd + (c.totalUsage?.costMicrosUsd ?? 0n),
        }),
      create(UsageSchema, { inputTokens: BigInt(e.inputTokens), outputTokens: BigInt(e.outputTokens), costMicrosUsd: BigInt(e.costMicros) }),
    );
    return toExecutionMessage(e, { admin, children, totalUsage });
  };
  return build(root);
}

function toBucket(row: StatsRow) {
  const finishedCount = row.succeeded + row.failed + row.timedOut + row.cancelled;
  return create(ExecutionStatsBucketSchema, {
    startTime: toTimestamp(row.bucket),
    count: BigInt(row.count),
    succeeded: BigInt(row.succeeded),
    failed: BigInt(row.failed),
    timedOut: BigInt(row.timedOut),
    cancelled: BigInt(row.cancelled),
    successRate: finishedCount === 0 ? 0 : row.succeeded / finishedCount,
    latencyAvgMs: row.latencyAvgMs,
    latencyP50Ms: row.latencyP50Ms,
    latencyP95Ms: row.latencyP95Ms,
    usage: {
      inputTokens: BigInt(row.inputTokens),
      outputTokens: BigInt(row.outputTokens),
      costMicrosUsd: BigInt(row.costMicros),
    },
  });
}

function toPurge(p: ExecutionPurge) {
  return { id: p.id, count: BigInt(p.count), olderThan: toTimestamp(p.olderThan), actor: p.actor, createTime: toTimestamp(p.createTime) };
}
