// Says once which database the suite runs on, so a green run on the wrong
// one is visible in the log.
export default function setup(): void {
  const url = process.env.TEST_DATABASE_URL;
  console.log(url ? `tests run on PostgreSQL (${new URL(url).host})` : "tests run on embedded PGlite");
}
