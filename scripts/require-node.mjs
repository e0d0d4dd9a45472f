// Loaded with `node --import` before any TypeScript file: on an older Node the
// .ts entry point would fail with an obscure "unknown file extension" error.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(
    `agent-platform needs Node >= 22.18 (it runs .ts files directly); this is Node ${process.versions.node}.\n` +
      "Run it through npm (npm start / npm test), which puts the pinned Node 24 from devDependencies first on PATH.",
  );
  process.exit(1);
}
