import { Redis } from "ioredis";
import { msUntilToken, type BucketStore, type Take } from "./bucket-store.ts";

// KEYS[1] the bucket; ARGV rate per second, burst. Redis runs a script
// atomically, timed by the server's clock (TIME), so every process shares
// one clock. Returns {admitted (0/1), tokens left (as text: Lua numbers
// become integers in replies)}.
const TAKE = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
local level = math.min(burst, tokens + math.max(0, now - last) * rate / 1000)
local admitted = 0
if level >= 1 then
  level = level - 1
  admitted = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(level), 'ms', tostring(math.max(now, last)))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {admitted, tostring(level)}
`;

/** A client with the take script registered. */
type BucketClient = Redis & { takeToken(key: string, rate: number, burst: number): Promise<[number, string]> };

/**
 * Buckets in Redis (REDIS_URL), one hash per tenant that expires once it
 * would be full again. A take waits at most `commandTimeoutMs` (commands
 * sent while connecting wait for the connection within that time).
 */
export function redisBuckets(url: string, commandTimeoutMs = 500): BucketStore {
  const redis = new Redis(url, {
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: commandTimeoutMs,
  }) as BucketClient;
  redis.defineCommand("takeToken", { numberOfKeys: 1, lua: TAKE });
  // Failures reach callers through rejected commands; without a listener
  // ioredis would print every reconnect attempt.
  redis.on("error", () => {});
  return {
    kind: "redis",
    async take(tenantId, ratePerSecond, burst): Promise<Take> {
      const [admitted, tokens] = await redis.takeToken(`agent-platform:rate:${tenantId}:api`, ratePerSecond, burst);
      return { admitted: admitted === 1, retryAfterMs: msUntilToken(Number(tokens), ratePerSecond) };
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
