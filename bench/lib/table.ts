import type { Measured } from "./drive.ts";
import type { RowDef } from "./rows.ts";

/** One line of the table, numbers already per call. */
export interface RowFigures {
  name: string;
  rps: number;
  /** rps / the ceiling's rps of the same run. */
  ratio: number;
  p50: number;
  p99: number;
  /** Calls of the window that did not end with grpc-status 0 (HTTP 200 for Connect JSON). */
  failed: number;
  /** Server (or ceiling) CPU per call, ms. */
  cpuMs: number;
  /** The load generator's CPU per call, ms: it must stay well under cpuMs for the row to measure the server. */
  loadCpuMs: number;
  /** Database transactions and statements per call; undefined: not measured. */
  xacts: number | undefined;
  statements: number | undefined;
  rssMax: number;
  rssEnd: number;
  /** Targets of the row, each "✓ …" or "✗ …". */
  checks: string[];
}

/** Turns a measurement into figures and checks the row's targets (issue #12). */
export function figures(row: RowDef, m: Measured, ceilingRps: number, rss: { max: number; end: number }): RowFigures {
  const calls = m.load.ok + m.load.failed;
  const rps = m.load.ok / m.load.seconds;
  const ratio = rps / ceilingRps;
  const cpuMs = calls > 0 ? m.targetCpuMs / calls : NaN;
  const xacts = m.pg && m.pg.transactions / Math.max(1, m.load.totalCalls);
  const statements = m.pg?.statements === undefined ? undefined : m.pg.statements / Math.max(1, m.load.totalCalls);
  const checks: string[] = [];
  const mark = (ok: boolean, text: string) => checks.push(`${ok ? "✓" : "✗"} ${text}`);
  const t = row.targets ?? {};
  if (t.ratio !== undefined) mark(ratio >= t.ratio, `≥${t.ratio}×`);
  if (t.cpuMs !== undefined) mark(cpuMs <= t.cpuMs, `≤${t.cpuMs} ms CPU`);
  if (t.p99Ms !== undefined) mark(m.load.p99 !== null && m.load.p99 <= t.p99Ms, `p99 ≤${t.p99Ms} ms`);
  // "Exactly one": within 0.05, for stray background transactions (the tenant settings cache reloads once a second).
  if (row.apiCall && xacts !== undefined) mark(Math.abs(xacts - 1) <= 0.05, "1 xact");
  if (m.load.failed > 0) mark(false, `${m.load.failed} failed`);
  if (calls === 0) mark(false, "no call completed in the window");
  return {
    name: row.name,
    rps,
    ratio,
    p50: m.load.p50,
    p99: m.load.p99,
    failed: m.load.failed,
    cpuMs,
    loadCpuMs: calls > 0 ? m.load.loadCpuMs / calls : NaN,
    xacts,
    statements,
    rssMax: rss.max,
    rssEnd: rss.end,
    checks,
  };
}

/** A number with `digits` decimals; "n/a" when there is none (NaN travels through JSON as null). */
function num(v: number | null | undefined, digits: number): string {
  return v === null || v === undefined || Number.isNaN(v) ? "n/a" : v.toFixed(digits);
}

const COLUMNS: [string, number, (f: RowFigures) => string][] = [
  ["row", 22, (f) => f.name],
  ["req/s", 8, (f) => num(f.rps, 0)],
  ["×ceil", 6, (f) => num(f.ratio, 3)],
  ["p50 ms", 7, (f) => num(f.p50, 2)],
  ["p99 ms", 7, (f) => num(f.p99, 2)],
  ["fail", 5, (f) => String(f.failed)],
  ["CPU ms/call", 11, (f) => num(f.cpuMs, 3)],
  ["load ms/call", 12, (f) => num(f.loadCpuMs, 3)],
  ["xact/call", 9, (f) => num(f.xacts, 2)],
  ["stmt/call", 9, (f) => num(f.statements, 2)],
  ["RSS max/end MiB", 15, (f) => `${num(f.rssMax, 0)}/${num(f.rssEnd, 0)}`],
];

/** The table header line. */
export function header(): string {
  return COLUMNS.map(([name, width], i) => (i === 0 ? name.padEnd(width) : name.padStart(width))).join("  ") + "  targets";
}

/** One table line. */
export function line(f: RowFigures): string {
  return COLUMNS.map(([, width, cell], i) => (i === 0 ? cell(f).padEnd(width) : cell(f).padStart(width))).join("  ") + `  ${f.checks.join("  ")}`;
}
