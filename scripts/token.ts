// Mints a token signed with JWT_SECRET (or the development secret), so a new
// user can call the server at once:
//   npm run token -- --tenant acme [--roles admin] [--ttl 1h] [--sub alice]
//   npm run token -- --roles operator [--sub ops]     # a platform operator, outside any tenant
import { parseArgs } from "node:util";
import { DEVELOPMENT_SECRET, mintToken } from "../src/auth/tokens.ts";
import { OPERATOR_ROLE, ROLES, type Role } from "../src/auth/principal.ts";

const { values } = parseArgs({
  options: {
    tenant: { type: "string", multiple: true },
    roles: { type: "string", default: "editor" },
    ttl: { type: "string", default: "1h" },
    sub: { type: "string", default: "dev-user" },
  },
});

const tenants = (values.tenant ?? []).flatMap((t) => t.split(",")).filter(Boolean);
const roles = values.roles.split(",").filter(Boolean);
if (tenants.length === 0 && !roles.includes(OPERATOR_ROLE)) {
  console.error(
    "usage: npm run token -- --tenant <id>[,<id>…] [--roles viewer|editor|admin] [--ttl 1h] [--sub <subject>]\n" +
      "       npm run token -- --roles operator [--ttl 1h] [--sub <subject>]",
  );
  process.exit(2);
}
const known: readonly string[] = [...ROLES, OPERATOR_ROLE];
const unknown = roles.filter((r) => !known.includes(r));
if (unknown.length > 0) {
  console.error(`unknown role(s): ${unknown.join(", ")}; roles are ${known.join(", ")}`);
  process.exit(2);
}
const secret = new TextEncoder().encode(process.env.JWT_SECRET ?? DEVELOPMENT_SECRET);
console.log(
  await mintToken(secret, {
    tenants,
    roles: roles as (Role | typeof OPERATOR_ROLE)[],
    subject: values.sub,
    ttl: values.ttl,
    issuer: process.env.JWT_ISSUER || undefined,
    audience: process.env.JWT_AUDIENCE || undefined,
  }),
);
