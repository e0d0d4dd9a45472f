// gRPC server reflection (grpc.reflection.v1 and v1alpha) for Connect routers.
// Spec: https://github.com/grpc/grpc/blob/master/doc/server-reflection.md
import { createRegistry, toBinary } from "@bufbuild/protobuf";
import type { DescExtension, DescFile, DescService, Registry } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** gRPC status code the spec asks for when a file, symbol or extension is unknown. */
const NOT_FOUND = 5;
/** gRPC status code for a request that sets none of the oneof cases. */
const INVALID_ARGUMENT = 3;

/** Everything reflection can answer, precomputed once from the exposed services. */
interface Catalog {
  serviceNames: string[];
  /** Keyed by proto path ("agentplatform/v1/tool.proto"); DescFile.name lacks the ".proto" suffix. */
  files: Map<string, DescFile>;
  /** Fully-qualified symbol (type, method, field, enum value) → the file that declares it. */
  symbols: Map<string, DescFile>;
  /** Types of every file, used to resolve extensions. */
  registry: Registry;
}

/** The two protocol versions carry identical request messages; the logic accepts either. */
type ReflectionRequest = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;

/**
 * A version-neutral `messageResponse` oneof. As a plain object (no $typeName) it is a
 * valid init shape for both the v1 and the v1alpha ServerReflectionResponse.
 */
type Answer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** grpc.reflection.v1.ServerReflection and grpc.reflection.v1alpha.ServerReflection over `services`. */
export function reflectionServices(services: DescService[]): {
  v1: ServiceImpl<typeof v1.ServerReflection>;
  v1alpha: ServiceImpl<typeof v1alpha.ServerReflection>;
} {
  const catalog = buildCatalog(services);
  return {
    v1: { serverReflectionInfo: (requests) => answerEach(requests, catalog) },
    v1alpha: { serverReflectionInfo: (requests) => answerEach(requests, catalog) },
  };
}

/** Registers both reflection services on a Connect router. */
export function registerReflection(router: ConnectRouter, services: DescService[]): void {
  const impls = reflectionServices(services);
  router.service(v1.ServerReflection, impls.v1);
  router.service(v1alpha.ServerReflection, impls.v1alpha);
}

function buildCatalog(services: DescService[]): Catalog {
  const files = withDependencies(services.map((service) => service.file));
  const symbols = new Map<string, DescFile>();
  for (const file of files.values()) {
    for (const symbol of declaredSymbols(file)) symbols.set(symbol, file);
  }
  return {
    serviceNames: services.map((service) => service.typeName),
    files,
    symbols,
    registry: createRegistry(...files.values()),
  };
}

/**
 * The given files and everything they import, transitively, keyed by proto path.
 * Insertion order starts with the first root, so a single-root result lists the requested file first.
 */
function withDependencies(roots: DescFile[]): Map<string, DescFile> {
  const found = new Map<string, DescFile>();
  const visit = (file: DescFile): void => {
    if (found.has(file.proto.name)) return;
    found.set(file.proto.name, file);
    file.dependencies.forEach(visit);
  };
  roots.forEach(visit);
  return found;
}

/** Every fully-qualified name a file declares: types at any nesting depth and their members. */
function* declaredSymbols(file: DescFile): Iterable<string> {
  for (const type of nestedTypes(file)) {
    yield type.typeName;
    switch (type.kind) {
      case "service":
        for (const method of type.methods) yield `${type.typeName}.${method.name}`;
        break;
      case "message":
        for (const field of type.fields) yield `${type.typeName}.${field.name}`;
        break;
      case "enum":
        // Enum values are scoped as siblings of their enum (C++ scoping): pkg.Enum.VALUE is pkg.VALUE.
        for (const value of type.values) yield `${scopeOf(type.typeName)}${value.name}`;
        break;
    }
  }
}

/** "pkg.Outer.Name" → "pkg.Outer."; a name without a scope → "". */
function scopeOf(typeName: string): string {
  return typeName.slice(0, typeName.lastIndexOf(".") + 1);
}

/** Per the spec, each request gets exactly one response, and errors do not end the stream. */
async function* answerEach<Request extends ReflectionRequest>(requests: AsyncIterable<Request>, catalog: Catalog) {
  for await (const request of requests) {
    yield { validHost: request.host, originalRequest: request, messageResponse: answer(request, catalog) };
  }
}

function answer({ messageRequest }: ReflectionRequest, catalog: Catalog): Answer {
  switch (messageRequest.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: catalog.serviceNames.map((name) => ({ name })) } };
    case "fileByFilename":
      return fileResponse(catalog.files.get(messageRequest.value), `file ${messageRequest.value}`);
    case "fileContainingSymbol":
      return fileResponse(catalog.symbols.get(messageRequest.value), `symbol ${messageRequest.value}`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = messageRequest.value;
      return fileResponse(
        findExtension(catalog.registry, containingType, extensionNumber)?.file,
        `extension ${extensionNumber} of ${containingType}`,
      );
    }
    case "allExtensionNumbersOfType":
      return extensionNumbersResponse(catalog.registry, messageRequest.value);
    case undefined:
      return errorAnswer(INVALID_ARGUMENT, "message_request is not set");
  }
}

function findExtension(registry: Registry, containingType: string, number: number): DescExtension | undefined {
  const extendee = registry.getMessage(containingType);
  return extendee && registry.getExtensionFor(extendee, number);
}

/** The file first, then its transitive imports: clients need all of them to build descriptors. */
function fileResponse(file: DescFile | undefined, what: string): Answer {
  if (!file) return errorAnswer(NOT_FOUND, `${what} not found`);
  const files = [...withDependencies([file]).values()];
  return {
    case: "fileDescriptorResponse",
    value: { fileDescriptorProto: files.map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
  };
}

function extensionNumbersResponse(registry: Registry, typeName: string): Answer {
  if (!registry.getMessage(typeName)) return errorAnswer(NOT_FOUND, `message type ${typeName} not found`);
  const numbers: number[] = [];
  for (const type of registry) {
    if (type.kind === "extension" && type.extendee.typeName === typeName) numbers.push(type.number);
  }
  return { case: "allExtensionNumbersResponse", value: { baseTypeName: typeName, extensionNumber: numbers } };
}

function errorAnswer(errorCode: number, errorMessage: string): Answer {
  return { case: "errorResponse", value: { errorCode, errorMessage } };
}
