// Applies (`up`) or reverts the last (`down`) database migration on
// DATABASE_URL, or on the embedded database under DATA_DIR.
import { loadConfig } from "../src/config.ts";
import { migrateDown, migrateUp, openDatabase } from "../src/database.ts";

const direction = process.argv[2];
if (direction !== "up" && direction !== "down") {
  console.error("usage: migrate.ts up|down");
  process.exit(2);
}
const orm = await openDatabase(loadConfig().database);
try {
  const names = direction === "up" ? await migrateUp(orm) : await migrateDown(orm);
  console.log(names.length ? `${direction}: ${names.join(", ")}` : `${direction}: nothing to do`);
} finally {
  await orm.close();
}
