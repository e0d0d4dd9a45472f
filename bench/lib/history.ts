import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { RowFigures } from "./table.ts";

const file = fileURLToPath(new URL("../history.tsv", import.meta.url));
const FIELDS = [
  "date", "commit", "driver", "connections", "streams", "seconds", "row", "rps", "ratio", "p50_ms", "p99_ms",
  "failed", "cpu_ms_per_call", "load_cpu_ms_per_call", "xact_per_call", "stmt_per_call", "rss_max_mib", "rss_end_mib",
];

/** The commit being measured: short id, "-dirty" when the worktree has changes. */
export function commitId(): string {
  try {
    const id = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/history.tsv"], { encoding: "utf8" }).trim() !== "";
    return dirty ? `${id}-dirty` : id;
  } catch {
    return "unknown";
  }
}

/** Appends the run's rows to bench/history.tsv (with a header when the file is new); returns its path. */
export function appendHistory(run: { commit: string; driver: string; connections: number; streams: number; seconds: number }, rows: RowFigures[]): string {
  const date = new Date().toISOString();
  const num = (v: number | null | undefined, digits: number) => (v === null || v === undefined || Number.isNaN(v) ? "" : v.toFixed(digits));
  const lines = rows.map((f) =>
    [
      date, run.commit, run.driver, run.connections, run.streams, run.seconds, f.name, num(f.rps, 0), num(f.ratio, 4),
      num(f.p50, 3), num(f.p99, 3), f.failed, num(f.cpuMs, 4), num(f.loadCpuMs, 4), num(f.xacts, 3), num(f.statements, 3),
      num(f.rssMax, 0), num(f.rssEnd, 0),
    ].join("\t"),
  );
  if (!existsSync(file)) appendFileSync(file, `${FIELDS.join("\t")}\n`);
  appendFileSync(file, `${lines.join("\n")}\n`);
  return file;
}
