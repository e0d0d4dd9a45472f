import { defineConfig } from "vitest/config";

// The suites that pin the wire: they run once per gRPC path (GRPC_PATH,
// read by test/support/server.ts): the grpc-js server and connect-node.
const BOTH_PATHS = ["test/wire/**/*.test.ts", "test/reliability/**/*.test.ts", "test/tenants/early-admission.test.ts"];

export default defineConfig({
  test: {
    // Each file gets its own database (test/support/db.ts), so files run in
    // parallel, one per core.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    globalSetup: ["test/support/global-setup.ts"],
    projects: [
      {
        extends: true,
        test: { name: "grpc-js", include: ["test/**/*.test.ts"], env: { GRPC_PATH: "grpc-js" } },
      },
      {
        extends: true,
        test: { name: "connect", include: BOTH_PATHS, env: { GRPC_PATH: "connect" } },
      },
    ],
  },
});
