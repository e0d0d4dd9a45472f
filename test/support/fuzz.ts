import { create, ScalarType, toBinary, toJsonString, type DescField, type DescMessage } from "@bufbuild/protobuf";

/*
 * Hostile input for the fuzz suite: a seeded PRNG (runs are reproducible),
 * strings that are hostile to SQL, JSON operators, LIKE and encodings, and
 * random messages of any type built by walking its descriptor.
 */

/** A deterministic pseudo-random source (mulberry32). */
export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** `n` random bytes. */
  bytes(n: number): Uint8Array;
}

/** A PRNG seeded with `seed`: the same seed gives the same sequence. */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick: (items) => items[int(items.length)]!,
    bytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = int(256);
      return out;
    },
  };
}

/** Strings shaped like SQL, JSON operators, LIKE patterns, paths and encoding traps. */
export const HOSTILE_STRINGS: readonly string[] = [
  "' OR 1=1 --",
  "'; drop table tools; --",
  '" OR ""="',
  '{"$ne":null}',
  '{"$gt":""}',
  "$where",
  "%",
  "_",
  "%_%",
  "\\",
  "\\%",
  "a%' OR tenant_id <> '",
  "*",
  "?",
  "?|",
  "@>",
  "->>'tenant_id'",
  "::text",
  "__proto__",
  "constructor",
  "../../etc/passwd",
  "%00",
  "NaN",
  "-1",
  "null",
  "true",
  "1e309",
  "ﬀ\u202e\u200b",
  "😀".repeat(10),
  " ",
  "\t\r\n",
];

/** Strings PostgreSQL cannot store, or that are not text at all. */
export const NUL_STRINGS: readonly string[] = ["\u0000", "a\u0000b", "tool\u0000' OR 1=1 --"];

const RESOURCE_ID_FIELD = /(^|_)ids?$|Ids?$/;

/** Options of `randomMessage`. */
export interface RandomOptions {
  /** Probability of a hostile string instead of a plain one. */
  hostile: number;
  /** Include NUL bytes in some strings. */
  nul: boolean;
  /** Ids that exist, used for id fields some of the time. */
  knownIds: readonly string[];
  /** Longest plain random string (default 5000). */
  maxLength?: number;
}

/** A random instance of `desc`, every field walked: hostile strings, extreme numbers, random Structs. */
export function randomMessage(desc: DescMessage, rng: Rng, options: RandomOptions, depth = 0): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  for (const oneof of desc.oneofs) {
    if (rng.chance(0.2)) continue;
    const field = rng.pick(oneof.fields);
    init[oneof.localName] = { case: field.localName, value: singular(field, rng, options, depth) };
  }
  for (const field of desc.fields) {
    if (field.oneof || rng.chance(0.25)) continue;
    if (field.fieldKind === "list") {
      const n = rng.pick([0, 1, 2, 5, 50]);
      init[field.localName] = Array.from({ length: n }, () => singular(field, rng, options, depth));
    } else if (field.fieldKind === "map") {
      const entries: Record<string, unknown> = {};
      for (let i = rng.int(4); i > 0; i--) entries[randomString(rng, options)] = singular(field, rng, options, depth);
      init[field.localName] = entries;
    } else {
      init[field.localName] = singular(field, rng, options, depth);
    }
  }
  return init;
}

function singular(field: DescField, rng: Rng, options: RandomOptions, depth: number): unknown {
  if (field.fieldKind === "enum" || (field.fieldKind !== "scalar" && field.fieldKind !== "message" && field.enum)) {
    const values = field.enum!.values.map((v) => v.number);
    return rng.pick([...values, -1, 99, 2147483647]);
  }
  const message = field.fieldKind === "message" ? field.message : field.fieldKind === "scalar" ? undefined : field.message;
  if (message) return randomOf(message, rng, options, depth + 1);
  const scalar = field.fieldKind === "scalar" ? field.scalar : field.scalar!;
  if (scalar === ScalarType.STRING && RESOURCE_ID_FIELD.test(field.name) && options.knownIds.length && rng.chance(0.5)) {
    return rng.pick(options.knownIds);
  }
  return randomScalar(scalar, rng, options);
}

function randomOf(message: DescMessage, rng: Rng, options: RandomOptions, depth: number): unknown {
  switch (message.typeName) {
    case "google.protobuf.Struct":
      return randomJsonObject(rng, options, 0);
    case "google.protobuf.Value":
      return randomJson(rng, options, 0);
    case "google.protobuf.ListValue":
      return [randomJson(rng, options, 1)];
    case "google.protobuf.Timestamp":
      return { seconds: rng.pick([0n, -62135596800n, 253402300799n, 1_800_000_000n, -1n]), nanos: rng.pick([0, 999_999_999]) };
    case "google.protobuf.Duration":
      return { seconds: rng.pick([0n, 1n, 315576000000n, -315576000000n]), nanos: 0 };
    case "google.protobuf.FieldMask":
      return { paths: Array.from({ length: rng.int(4) }, () => rng.pick(["name", "description", "config", "x.y", "", "*", ...HOSTILE_STRINGS])) };
    case "google.protobuf.Empty":
      return {};
  }
  if (message.typeName.startsWith("google.protobuf.") && message.typeName.endsWith("Value")) {
    // Wrappers are their plain value.
    return randomScalar(message.fields[0]!.fieldKind === "scalar" ? message.fields[0]!.scalar : ScalarType.STRING, rng, options);
  }
  if (depth > 4) return {};
  return randomMessage(message, rng, options, depth);
}

function randomScalar(scalar: ScalarType, rng: Rng, options: RandomOptions): unknown {
  switch (scalar) {
    case ScalarType.STRING:
      return randomString(rng, options);
    case ScalarType.BYTES:
      return rng.bytes(rng.int(64));
    case ScalarType.BOOL:
      return rng.chance(0.5);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return rng.pick([0, -1, 1e308, -1e308, Number.MIN_VALUE, 0.5, Infinity, -Infinity, NaN]);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return rng.pick([0n, -1n, 1n, 9223372036854775807n, -9223372036854775808n, 50n]);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return rng.pick([0n, 1n, 18446744073709551615n, 50n]);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return rng.pick([0, 1, 4294967295, 50]);
    default:
      return rng.pick([0, -1, 1, 2147483647, -2147483648, 50, 201]);
  }
}

/** A plain, hostile or (when allowed) NUL-carrying string. */
export function randomString(rng: Rng, options: Pick<RandomOptions, "hostile" | "nul" | "maxLength">): string {
  if (options.nul && rng.chance(0.15)) return rng.pick(NUL_STRINGS);
  if (rng.chance(options.hostile)) return rng.pick(HOSTILE_STRINGS);
  const length = Math.min(rng.pick([0, 1, 8, 40, 300, 5000]), options.maxLength ?? 5000);
  let s = "";
  for (let i = 0; i < length; i++) s += String.fromCharCode(rng.chance(0.9) ? 0x61 + rng.int(26) : 0x20 + rng.int(0x2000));
  return s;
}

function randomJson(rng: Rng, options: RandomOptions, depth: number): unknown {
  const kind = depth > 3 ? rng.int(4) : rng.int(6);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return rng.pick([0, -1, 1.5, 1e300, -1e300]);
    case 2:
      return randomString(rng, options);
    case 3:
      return rng.chance(0.5);
    case 4:
      return Array.from({ length: rng.int(4) }, () => randomJson(rng, options, depth + 1));
    default:
      return randomJsonObject(rng, options, depth + 1);
  }
}

function randomJsonObject(rng: Rng, options: RandomOptions, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (rng.chance(0.3)) out.type = rng.pick(["object", "string", 7, ...HOSTILE_STRINGS]);
  for (let i = rng.int(5); i > 0; i--) out[randomString(rng, options)] = randomJson(rng, options, depth + 1);
  return out;
}

/** The message encoded as protobuf binary and as JSON, or undefined when it cannot be (a value out of range). */
export function encodings(desc: DescMessage, init: Record<string, unknown>): { binary: Uint8Array; json: string } | undefined {
  try {
    const message = create(desc, init as never);
    return { binary: toBinary(desc, message), json: toJsonString(desc, message) };
  } catch {
    return undefined;
  }
}

/** Every string field reachable from `desc` (two levels deep), as paths of local field names. */
export function stringFieldPaths(desc: DescMessage, prefix: string[] = [], depth = 0): string[][] {
  const paths: string[][] = [];
  for (const field of desc.fields) {
    if (field.oneof) continue;
    if (field.fieldKind === "scalar" && field.scalar === ScalarType.STRING) paths.push([...prefix, field.localName]);
    if (field.fieldKind === "list" && field.listKind === "scalar" && field.scalar === ScalarType.STRING) {
      paths.push([...prefix, field.localName, "[]"]);
    }
    if (field.fieldKind === "message" && depth < 1 && !field.message.typeName.startsWith("google.")) {
      paths.push(...stringFieldPaths(field.message, [...prefix, field.localName], depth + 1));
    }
  }
  return paths;
}

/** `init` with the string at `path` (from stringFieldPaths) set to `value`. */
export function withString(init: Record<string, unknown>, path: string[], value: string): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...init };
  let target = copy;
  for (const [i, key] of path.entries()) {
    if (key === "[]") continue;
    const last = i === path.length - 1 || path[i + 1] === "[]";
    if (last) {
      target[key] = path[i + 1] === "[]" ? [value] : value;
      break;
    }
    const inner = { ...((target[key] as Record<string, unknown> | undefined) ?? {}) };
    target[key] = inner;
    target = inner;
  }
  return copy;
}

/** A Struct nested `depth` levels deep as JSON text ({"a":{"a":…1…}}), built without recursion. */
export function deepStructJson(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

/**
 * google.protobuf.Struct nested `depth` levels deep in protobuf binary
 * ({"a": {"a": … 1 …}}), written without recursion: the sizes are summed
 * from the inside out, then the bytes written from the outside in.
 */
export function deepStructBinary(depth: number): Uint8Array {
  const INNER = Uint8Array.of(0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f); // Value{number_value: 1}
  const KEY = Uint8Array.of(0x0a, 0x01, 0x61); // map entry key "a"
  // structSize[i]: the Struct at level i (0 outermost); valueSize[i]: the Value inside it.
  const structSize: number[] = new Array(depth);
  const valueSize: number[] = new Array(depth);
  let inner = INNER.length;
  for (let i = depth - 1; i >= 0; i--) {
    valueSize[i] = inner;
    const entry = KEY.length + 1 + varint(inner).length + inner;
    structSize[i] = 1 + varint(entry).length + entry;
    inner = 1 + varint(structSize[i]!).length + structSize[i]!;
  }
  const out = new Uint8Array(structSize[0]!);
  let at = 0;
  const put = (bytes: Uint8Array) => {
    out.set(bytes, at);
    at += bytes.length;
  };
  for (let i = 0; i < depth; i++) {
    const entry = KEY.length + 1 + varint(valueSize[i]!).length + valueSize[i]!;
    put(Uint8Array.of(0x0a)); // Struct.fields
    put(varint(entry));
    put(KEY);
    put(Uint8Array.of(0x12)); // entry value
    put(varint(valueSize[i]!));
    if (i < depth - 1) {
      put(Uint8Array.of(0x2a)); // Value.struct_value
      put(varint(structSize[i + 1]!));
    }
  }
  put(INNER);
  return out;
}

/** A length-delimited field: tag byte, varint length, bytes. */
export function delimited(tag: number, bytes: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(tag), varint(bytes.length), bytes]);
}

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return Uint8Array.from(out);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** `bytes` with every occurrence of the UTF-8 of `marker` overwritten by invalid UTF-8 (0xff) of the same length. */
export function corruptUtf8(bytes: Uint8Array, marker: string): Uint8Array {
  const needle = new TextEncoder().encode(marker);
  const out = bytes.slice();
  outer: for (let i = 0; i + needle.length <= out.length; i++) {
    for (let j = 0; j < needle.length; j++) if (out[i + j] !== needle[j]) continue outer;
    out.fill(0xff, i, i + needle.length);
  }
  return out;
}
