import pg from "pg";

// Databases the suites create are named `agent_platform_<kind>_<slot>_<pid>`.
const OWNED = /^agent_platform_([a-z]+)_\d+_(\d+)$/;

/**
 * Says once which database the suite runs on (so a green run on the wrong
 * one is visible in the log), and drops test databases left behind by
 * processes that no longer exist (a run killed before its cleanup).
 */
export default async function setup(): Promise<void> {
  const url = process.env.TEST_DATABASE_URL;
  console.log(url ? `tests run on PostgreSQL (${new URL(url).host})` : "tests run on embedded PGlite");
  if (!url) return;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>("select datname from pg_database where datname like 'agent_platform_%'");
    for (const { datname } of rows) {
      const pid = OWNED.exec(datname)?.[2];
      if (pid && !alive(Number(pid))) {
        await client.query(`drop database if exists "${datname}" with (force)`);
      }
    }
  } finally {
    await client.end();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
