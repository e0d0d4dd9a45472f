import { describe, it, expect } from "vitest";
import { create, createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import type { FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { registerReflection } from "../../src/platform/reflection.ts";

/** A request written once and sent through either protocol version. */
type Request = {
  host?: string;
  messageRequest:
    | { case: "listServices" | "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType"; value: string }
    | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } };
};
type Response = v1.ServerReflectionResponse | v1alpha.ServerReflectionResponse;

const transport = createRouterTransport((router) =>
  registerReflection(router, [ToolService, AgentService, Health, v1.ServerReflection, v1alpha.ServerReflection]),
);

/** Sends all requests on one ServerReflectionInfo stream and collects every response. */
const versions: { version: string; reflect: (requests: Request[]) => Promise<Response[]> }[] = [
  {
    version: "v1",
    reflect: (requests) => collect(createClient(v1.ServerReflection, transport).serverReflectionInfo(stream(requests))),
  },
  {
    version: "v1alpha",
    reflect: (requests) =>
      collect(createClient(v1alpha.ServerReflection, transport).serverReflectionInfo(stream(requests))),
  },
];

async function* stream<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

function symbolRequest(symbol: string): Request {
  return { messageRequest: { case: "fileContainingSymbol", value: symbol } };
}

/** Decodes a fileDescriptorResponse, failing the test on any other kind of response. */
function fileDescriptors(response: Response | undefined): FileDescriptorProto[] {
  const answer = response?.messageResponse;
  if (answer?.case !== "fileDescriptorResponse") throw new Error(`expected files, got ${JSON.stringify(answer)}`);
  return answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

/** Orders files so each follows its imports, as createFileRegistry(FileDescriptorSet) requires. */
function importsFirst(files: FileDescriptorProto[]): FileDescriptorProto[] {
  const byName = new Map(files.map((file) => [file.name, file]));
  const ordered = new Map<string, FileDescriptorProto>();
  const visit = (file: FileDescriptorProto): void => {
    if (ordered.has(file.name)) return;
    for (const dependency of file.dependency) {
      const imported = byName.get(dependency);
      if (imported) visit(imported);
    }
    ordered.set(file.name, file);
  };
  files.forEach(visit);
  return [...ordered.values()];
}

describe.each(versions)("grpc.reflection.$version.ServerReflection", ({ reflect }) => {
  it("lists every exposed service", async () => {
    const [response] = await reflect([{ messageRequest: { case: "listServices", value: "" } }]);

    const answer = response?.messageResponse;
    expect(answer?.case).toBe("listServicesResponse");
    const names = answer?.case === "listServicesResponse" ? answer.value.service.map((s) => s.name) : [];
    expect(names).toContain("agentplatform.v1.ToolService");
    expect(names).toContain("agentplatform.v1.AgentService");
    expect(names).toContain("grpc.reflection.v1alpha.ServerReflection");
  });

  it("echoes the original request and host in each response", async () => {
    const [response] = await reflect([{ host: "example.test", ...symbolRequest("agentplatform.v1.ToolService") }]);

    expect(response?.validHost).toBe("example.test");
    expect(response?.originalRequest?.messageRequest).toEqual({
      case: "fileContainingSymbol",
      value: "agentplatform.v1.ToolService",
    });
  });

  it("returns the file declaring a service first, followed by its transitive imports", async () => {
    const [response] = await reflect([symbolRequest("agentplatform.v1.ToolService")]);

    const names = fileDescriptors(response).map((file) => file.name);
    expect(names[0]).toBe("agentplatform/v1/tool_service.proto");
    expect(names).toEqual(
      expect.arrayContaining([
        "agentplatform/v1/tool.proto",
        "buf/validate/validate.proto",
        "google/protobuf/field_mask.proto",
        "google/protobuf/descriptor.proto",
      ]),
    );
    expect(new Set(names).size).toBe(names.length);
  });

  it("returns a file set complete enough to rebuild the service descriptor", async () => {
    const [response] = await reflect([symbolRequest("agentplatform.v1.ToolService")]);

    const set = create(FileDescriptorSetSchema, { file: importsFirst(fileDescriptors(response)) });
    const service = createFileRegistry(set).getService("agentplatform.v1.ToolService");
    expect(service?.methods.map((method) => method.name)).toContain("GetTool");
  });

  it("resolves a method symbol to the file declaring its service", async () => {
    const [response] = await reflect([symbolRequest("agentplatform.v1.ToolService.GetTool")]);

    expect(fileDescriptors(response)[0]?.name).toBe("agentplatform/v1/tool_service.proto");
  });

  it("resolves a file by name, including well-known types", async () => {
    const [response] = await reflect([
      { messageRequest: { case: "fileByFilename", value: "google/protobuf/timestamp.proto" } },
    ]);

    expect(fileDescriptors(response).map((file) => file.name)).toEqual(["google/protobuf/timestamp.proto"]);
  });

  it("answers extension queries from the buf.validate options", async () => {
    const [numbers, file] = await reflect([
      { messageRequest: { case: "allExtensionNumbersOfType", value: "google.protobuf.FieldOptions" } },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "google.protobuf.FieldOptions", extensionNumber: 1159 },
        },
      },
    ]);

    const answer = numbers?.messageResponse;
    expect(answer?.case === "allExtensionNumbersResponse" && answer.value.extensionNumber).toContain(1159);
    expect(fileDescriptors(file)[0]?.name).toBe("buf/validate/validate.proto");
  });

  it("reports an unknown symbol as NOT_FOUND and keeps answering on the same stream", async () => {
    const responses = await reflect([
      symbolRequest("agentplatform.v1.NoSuchService"),
      { messageRequest: { case: "listServices", value: "" } },
    ]);

    expect(responses).toHaveLength(2);
    const error = responses[0]?.messageResponse;
    expect(error?.case).toBe("errorResponse");
    expect(error?.case === "errorResponse" && error.value.errorCode).toBe(5);
    expect(responses[1]?.messageResponse.case).toBe("listServicesResponse");
  });
});
