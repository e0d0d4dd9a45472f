// Postinstall hook: (re)creates the git-ignored proto-deps/ folder, a buf module with the
// third-party .proto files our own protos import. We may not commit third-party protos, so
// every file is derived from installed npm packages. Plain JS so it runs without a build step.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const outDir = fileURLToPath(new URL("../proto-deps/", import.meta.url));

// .proto files that packages ship as plain files: [package, path in package, path in proto-deps].
const COPIES = [
  ["grpc-health-check", "proto/health/v1/health.proto", "grpc/health/v1/health.proto"],
  ["@grpc/reflection", "build/proto/grpc/reflection/v1/reflection.proto", "grpc/reflection/v1/reflection.proto"],
  ["@grpc/reflection", "build/proto/grpc/reflection/v1alpha/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"],
  ["google-proto-files", "google/rpc/error_details.proto", "google/rpc/error_details.proto"],
  ["google-proto-files", "google/rpc/status.proto", "google/rpc/status.proto"],
  ["google-proto-files", "google/rpc/code.proto", "google/rpc/code.proto"],
];

// Package root directory, or null if the package is not installed (e.g. `npm ci --omit=dev`).
// Packages with an "exports" map may hide package.json, so fall back to walking up from the
// main entry until we reach the package.json that carries the package's name.
function packageRoot(name) {
  try {
    return dirname(require.resolve(`${name}/package.json`));
  } catch (err) {
    if (err.code === "MODULE_NOT_FOUND") return null;
    if (err.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw err;
  }
  for (let dir = dirname(require.resolve(name)); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      if (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).name === name) return dir;
    } catch (err) {
      if (err.code !== "ENOENT") throw err;
    }
  }
  throw new Error(`cannot locate the root of package ${name}`);
}

function warnMissing(pkg, target) {
  console.warn(`proto-deps: warning: ${pkg} is not installed, skipping proto-deps/${target}`);
}

// ---- Printing buf/validate/validate.proto from its embedded FileDescriptorProto ----

// Loaded lazily, so that a missing package is reported as a warning instead of a crash.
let pb, wkt, toText, protoCamelCase, Type, Label;

const indent = (text) => text.split("\n").map((l) => (l ? `  ${l}` : l)).join("\n");
const block = (head, lines) => `${head} {\n${indent(lines.filter(Boolean).join("\n"))}\n}`;

// Escapes a string for a .proto string literal (UTF-8 is fine as is; control chars are not).
function quote(str) {
  const esc = { "\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t" };
  return `"${str.replace(/[\\"\x00-\x1f\x7f]/g, (c) => esc[c] ?? `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`)}"`;
}

// Value of one (standard or custom) option in .proto syntax; messages use the text format.
function literal(field, value, ctx) {
  const kind = field.fieldKind === "list" ? field.listKind : field.fieldKind;
  if (kind === "enum") return field.enum.value[value]?.name ?? String(value);
  if (kind === "message") return `{\n${indent(toText(field.message, value, { registry: ctx.registry }).trimEnd())}\n}`;
  if (kind !== "scalar") throw new Error(`cannot print option ${field.name} of kind ${kind}`);
  if (field.scalar === pb.ScalarType.STRING) return quote(value);
  if (field.scalar === pb.ScalarType.BYTES) return quote(String.fromCharCode(...value));
  if (typeof value === "number" && !Number.isFinite(value)) return Number.isNaN(value) ? "nan" : value > 0 ? "inf" : "-inf";
  return String(value);
}

// "name = value" for every option set on an options message: its standard fields plus the
// custom options (extensions) known to the registry, i.e. those of validate.proto and its imports.
function optionAssignments(schema, options, ctx) {
  if (!options) return [];
  const out = [];
  const add = (name, field, value) => {
    for (const v of field.fieldKind === "list" ? value : [value]) out.push(`${name} = ${literal(field, v, ctx)}`);
  };
  for (const field of schema.fields) {
    if (field.name !== "uninterpreted_option" && pb.isFieldSet(options, field)) add(field.name, field, options[field.localName]);
  }
  const printed = new Set();
  for (const ext of ctx.registry) {
    if (ext.kind === "extension" && ext.extendee.typeName === schema.typeName && pb.hasExtension(options, ext)) {
      add(`(${ext.typeName})`, ext, pb.getExtension(options, ext));
      printed.add(ext.number);
    }
  }
  // Custom options from files the registry does not know stay undecoded; say so instead of hiding it.
  for (const no of new Set((options.$unknown ?? []).map((u) => u.no).filter((no) => !printed.has(no)))) {
    console.warn(`proto-deps: warning: dropped unknown custom option #${no} on a ${schema.typeName}`);
  }
  return out;
}

const optionStatements = (schema, options, ctx) => optionAssignments(schema, options, ctx).map((o) => `option ${o};`);

function fieldType(field, ctx) {
  // proto2 groups need their own syntax; in editions TYPE_GROUP is a message with DELIMITED encoding.
  if (field.type === Type.GROUP && ctx.syntax !== "editions") throw new Error(`groups are not supported (field ${field.name})`);
  if ([Type.MESSAGE, Type.ENUM, Type.GROUP].includes(field.type)) return field.typeName; // fully qualified: ".pkg.Name"
  return wkt.FieldDescriptorProto_TypeSchema.value[field.type].name.slice("TYPE_".length).toLowerCase();
}

function label(field, ctx) {
  if (field.label === Label.REPEATED) return "repeated ";
  if (field.label === Label.REQUIRED && ctx.syntax !== "editions") return "required ";
  // proto2 spells out "optional"; proto3 only for explicit presence; editions use features.
  return ctx.syntax === "proto2" || field.proto3Optional ? "optional " : "";
}

const has = (field, name) => pb.isFieldSet(field, wkt.FieldDescriptorProtoSchema.field[name]);

function printField(field, ctx, { mapEntry, inOneof = false, isExtension = false } = {}) {
  const type = mapEntry ? `map<${fieldType(mapEntry.field[0], ctx)}, ${fieldType(mapEntry.field[1], ctx)}>` : fieldType(field, ctx);
  const opts = [];
  if (has(field, "defaultValue")) {
    const raw = field.defaultValue; // strings are raw, bytes are already C-escaped, the rest are literals
    opts.push(`default = ${field.type === Type.STRING ? quote(raw) : field.type === Type.BYTES ? `"${raw}"` : raw}`);
  }
  // protoc rejects json_name on extensions; elsewhere only print it when it is not the default.
  if (!isExtension && has(field, "jsonName") && field.jsonName !== protoCamelCase(field.name)) {
    opts.push(`json_name = ${quote(field.jsonName)}`);
  }
  opts.push(...optionAssignments(wkt.FieldOptionsSchema, field.options, ctx));
  const prefix = mapEntry || inOneof ? "" : label(field, ctx);
  return `${prefix}${type} ${field.name} = ${field.number}${opts.length ? ` [${opts.join(", ")}]` : ""};`;
}

// "1, 5 to 9, 1000 to max"; `inclusive` is false for message ranges, whose end is exclusive.
function ranges(list, inclusive, max) {
  return list.map(({ start, end }) => {
    const last = inclusive ? end : end - 1;
    return start === last ? `${start}` : `${start} to ${last === max ? "max" : last}`;
  }).join(", ");
}

function reserved(rangeList, names, inclusive, max, ctx) {
  return [
    rangeList.length ? `reserved ${ranges(rangeList, inclusive, max)};` : "",
    // editions spell reserved names as identifiers, proto2/proto3 as strings
    names.length ? `reserved ${names.map((n) => (ctx.syntax === "editions" ? n : quote(n))).join(", ")};` : "",
  ];
}

function printExtensions(extensions, ctx) {
  const byExtendee = new Map();
  for (const ext of extensions) byExtendee.set(ext.extendee, [...(byExtendee.get(ext.extendee) ?? []), ext]);
  return [...byExtendee].map(([extendee, exts]) =>
    block(`extend ${extendee}`, exts.map((e) => printField(e, ctx, { isExtension: true }))));
}

function printEnum(en, ctx) {
  const values = en.value.map((v) => {
    const opts = optionAssignments(wkt.EnumValueOptionsSchema, v.options, ctx);
    return `${v.name} = ${v.number}${opts.length ? ` [${opts.join(", ")}]` : ""};`;
  });
  return block(`enum ${en.name}`, [
    ...optionStatements(wkt.EnumOptionsSchema, en.options, ctx),
    ...values,
    ...reserved(en.reservedRange, en.reservedName, true, 2147483647, ctx),
  ]);
}

function printMessage(msg, scope, ctx) {
  const fullName = `${scope}.${msg.name}`;
  // Map fields are repeated fields of a synthetic nested "*Entry" message marked map_entry.
  const mapEntries = new Map(msg.nestedType.filter((n) => n.options?.mapEntry).map((n) => [`${fullName}.${n.name}`, n]));
  const realOneof = (f) => has(f, "oneofIndex") && !f.proto3Optional; // proto3 optional uses synthetic oneofs
  // Nested types first: map entries are synthesized where their field is, so this keeps the
  // nested_type order of the usual layout (explicit nested messages, then map fields).
  const lines = [
    ...optionStatements(wkt.MessageOptionsSchema, msg.options, ctx),
    ...msg.nestedType.filter((n) => !n.options?.mapEntry).map((n) => printMessage(n, fullName, ctx)),
    ...msg.enumType.map((e) => printEnum(e, ctx)),
  ];
  const printedOneofs = new Set();
  for (const field of msg.field) {
    if (!realOneof(field)) {
      lines.push(printField(field, ctx, { mapEntry: mapEntries.get(field.typeName) }));
    } else if (!printedOneofs.has(field.oneofIndex)) {
      // Print the whole oneof where its first member appears.
      printedOneofs.add(field.oneofIndex);
      const decl = msg.oneofDecl[field.oneofIndex];
      const members = msg.field.filter((f) => realOneof(f) && f.oneofIndex === field.oneofIndex);
      lines.push(block(`oneof ${decl.name}`, [
        ...optionStatements(wkt.OneofOptionsSchema, decl.options, ctx),
        ...members.map((f) => printField(f, ctx, { inOneof: true })),
      ]));
    }
  }
  for (const r of msg.extensionRange) {
    const opts = optionAssignments(wkt.ExtensionRangeOptionsSchema, r.options, ctx);
    lines.push(`extensions ${ranges([r], false, 536870911)}${opts.length ? ` [${opts.join(", ")}]` : ""};`);
  }
  lines.push(...reserved(msg.reservedRange, msg.reservedName, false, 536870911, ctx));
  lines.push(...printExtensions(msg.extension, ctx));
  return block(`message ${msg.name}`, lines);
}

function printService(svc, ctx) {
  return block(`service ${svc.name}`, [
    ...optionStatements(wkt.ServiceOptionsSchema, svc.options, ctx),
    ...svc.method.map((m) => {
      const sig = `rpc ${m.name}(${m.clientStreaming ? "stream " : ""}${m.inputType}) returns (${m.serverStreaming ? "stream " : ""}${m.outputType})`;
      const opts = optionStatements(wkt.MethodOptionsSchema, m.options, ctx);
      return opts.length ? block(sig, opts) : `${sig};`;
    }),
  ]);
}

function printFile(file, registry, source) {
  const ctx = { syntax: file.syntax || "proto2", registry }; // an unset syntax field means proto2
  const version = ctx.syntax === "editions"
    ? `edition = "${wkt.EditionSchema.value[file.edition].name.replace("EDITION_", "")}";`
    : `syntax = "${ctx.syntax}";`;
  const imports = file.dependency.map((dep, i) =>
    `import ${file.publicDependency.includes(i) ? "public " : file.weakDependency.includes(i) ? "weak " : ""}${quote(dep)};`);
  const scope = file.package ? `.${file.package}` : "";
  const sections = [
    // Descriptors carry no comments, so the printed file has none beyond this header.
    `// Generated by scripts/proto-deps.mjs from the descriptor embedded in ${source}.\n// DO NOT EDIT.`,
    version,
    file.package ? `package ${file.package};` : "",
    imports.join("\n"),
    optionStatements(wkt.FileOptionsSchema, file.options, ctx).join("\n"),
    ...file.messageType.map((m) => printMessage(m, scope, ctx)),
    ...file.enumType.map((e) => printEnum(e, ctx)),
    ...file.service.map((s) => printService(s, ctx)),
    ...printExtensions(file.extension, ctx),
  ];
  return `${sections.filter(Boolean).join("\n\n")}\n`;
}

// validate.proto is not shipped as a file; protovalidate only embeds its descriptor.
async function validateProto() {
  const target = "buf/validate/validate.proto";
  for (const name of ["@bufbuild/protovalidate", "@bufbuild/protobuf"]) {
    if (!packageRoot(name)) return warnMissing(name, target);
  }
  pb = await import("@bufbuild/protobuf");
  wkt = await import("@bufbuild/protobuf/wkt");
  ({ FieldDescriptorProto_Type: Type, FieldDescriptorProto_Label: Label } = wkt);
  ({ toText } = await import("@bufbuild/protobuf/txtpb"));
  ({ protoCamelCase } = await import("@bufbuild/protobuf/reflect"));
  const { file_buf_validate_validate: desc } = await import("@bufbuild/protovalidate/gen/buf/validate/validate_pb.js");
  const { version } = JSON.parse(readFileSync(join(packageRoot("@bufbuild/protovalidate"), "package.json"), "utf8"));
  // The registry lets custom options (e.g. buf.validate.predefined) be decoded and printed.
  const registry = pb.createRegistry(desc, ...desc.dependencies);
  return [target, printFile(desc.proto, registry, `@bufbuild/protovalidate@${version}`)];
}

function copiedProto([pkg, from, target]) {
  const root = packageRoot(pkg);
  if (!root) return warnMissing(pkg, target);
  try {
    return [target, readFileSync(join(root, from), "utf8")];
  } catch (err) {
    throw new Error(`${pkg} is installed but ${from} could not be read: ${err.message}`);
  }
}

async function main() {
  // Produce everything first, so a failure never leaves a half-written proto-deps/ behind.
  const files = [await validateProto(), ...COPIES.map(copiedProto)].filter(Boolean);
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir); // even if empty: buf.yaml lists it as a module
  for (const [target, content] of files) {
    mkdirSync(dirname(join(outDir, target)), { recursive: true });
    writeFileSync(join(outDir, target), content);
  }
  console.log(`proto-deps: wrote ${files.length} .proto file(s) to proto-deps/`);
}

main().catch((err) => {
  console.error(`proto-deps: ${err.stack ?? err}`);
  process.exitCode = 1;
});
