import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { onCleanup } from "./cleanup.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));

/** The bare grpc-js ceiling server (ceiling-server.ts) as a process of its own. */
export interface Ceiling {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export function startCeiling(): Promise<Ceiling> {
  const child = spawn(process.execPath, ["--import", "./scripts/require-node.mjs", "bench/lib/ceiling-server.ts"], {
    cwd: root,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = onCleanup("ceiling server", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    return exited;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the ceiling server did not start within 20 s")), 20_000);
    child.once("exit", (code) => reject(new Error(`the ceiling server exited with ${code}`)));
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      const port = /^(\d+)\n/.exec(out)?.[1];
      if (port) {
        clearTimeout(timer);
        resolve({ url: `http://127.0.0.1:${port}`, pid: child.pid!, stop });
      }
    });
  });
}
