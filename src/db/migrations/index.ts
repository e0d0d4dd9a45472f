import { Migration20261123000000Foundation } from "./Migration20261123000000Foundation.ts";
import { Migration20261123010000Agents } from "./Migration20261123010000Agents.ts";
import { Migration20261123020000Credentials } from "./Migration20261123020000Credentials.ts";
import { Migration20261123030000Executions } from "./Migration20261123030000Executions.ts";
import { Migration20261123040000Idempotency } from "./Migration20261123040000Idempotency.ts";
import { Migration20261123050000Tenants } from "./Migration20261123050000Tenants.ts";
import { Migration20261124000000RowLevelSecurity } from "./Migration20261124000000RowLevelSecurity.ts";
import { Migration20261125000000AsyncRateTokens } from "./Migration20261125000000AsyncRateTokens.ts";

/**
 * Every migration, in order. Listed explicitly (not discovered from the file
 * system) so the same list runs from `npm start`, `npm run migrate` and tests.
 */
export const migrations = [
  { name: "Migration20261123000000Foundation", class: Migration20261123000000Foundation },
  { name: "Migration20261123010000Agents", class: Migration20261123010000Agents },
  { name: "Migration20261123020000Credentials", class: Migration20261123020000Credentials },
  { name: "Migration20261123030000Executions", class: Migration20261123030000Executions },
  { name: "Migration20261123040000Idempotency", class: Migration20261123040000Idempotency },
  { name: "Migration20261123050000Tenants", class: Migration20261123050000Tenants },
  { name: "Migration20261124000000RowLevelSecurity", class: Migration20261124000000RowLevelSecurity },
  { name: "Migration20261125000000AsyncRateTokens", class: Migration20261125000000AsyncRateTokens },
];
