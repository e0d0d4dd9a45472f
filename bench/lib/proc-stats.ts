import { readFileSync } from "node:fs";

// Clock ticks per second of /proc/<pid>/stat times; 100 on every Linux this runs on (getconf CLK_TCK).
const TICKS_PER_SECOND = 100;

/** CPU time (user + system) a process has used so far, in ms; NaN when /proc cannot tell. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may hold spaces and ends with ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** Resident set size of a process, in MiB; NaN when /proc cannot tell. */
export function rssMiB(pid: number): number {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
    return kb / 1024;
  } catch {
    return NaN;
  }
}

/** Samples a process's RSS every `everyMs` until stopped; `take()` returns the max since the last take and the latest. */
export function sampleRss(pid: number, everyMs = 200) {
  let max = 0;
  let last = NaN;
  let overall = 0;
  const sample = () => {
    const v = rssMiB(pid);
    if (Number.isNaN(v)) return;
    last = v;
    max = Math.max(max, v);
    overall = Math.max(overall, v);
  };
  sample();
  const timer = setInterval(sample, everyMs);
  timer.unref();
  return {
    /** Max and latest RSS since the previous take, in MiB. */
    take(): { max: number; end: number } {
      sample();
      const result = { max, end: last };
      max = last;
      return result;
    },
    /** Max RSS over the whole sampling, in MiB. */
    overallMax: () => overall,
    stop: () => clearInterval(timer),
  };
}
