import { Migration } from "@mikro-orm/migrations";
import { takeRateTokenFunction } from "./take-rate-token.ts";

/**
 * take_rate_token commits without waiting for the WAL flush (see
 * take-rate-token.ts): every admitted call of every tenant takes a token, and
 * a synchronous commit made each of them wait for a disk flush, the slowest
 * and least predictable step of the call. Same signature, so the grants stay.
 */
export class Migration20261125000000AsyncRateTokens extends Migration {
  override up(): void {
    this.addSql(takeRateTokenFunction({ create: "create or replace", asyncCommit: true }));
  }

  override down(): void {
    this.addSql(takeRateTokenFunction({ create: "create or replace", asyncCommit: false }));
  }
}
