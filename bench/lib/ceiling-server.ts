// The ceiling: a bare @grpc/grpc-js server answering grpc.health.v1.Health/Check
// with the generated messages, nothing else. Run as a process of its own; it
// prints its port on stdout and stops on SIGTERM.
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";

const check: grpc.MethodDefinition<HealthCheckRequest, HealthCheckResponse> = {
  path: "/grpc.health.v1.Health/Check",
  requestStream: false,
  responseStream: false,
  requestSerialize: (m) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
  requestDeserialize: (b) => fromBinary(HealthCheckRequestSchema, b),
  responseSerialize: (m) => Buffer.from(toBinary(HealthCheckResponseSchema, m)),
  responseDeserialize: (b) => fromBinary(HealthCheckResponseSchema, b),
};
const serving = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });

const server = new grpc.Server();
server.addService({ Check: check }, {
  Check: (_call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, done: grpc.sendUnaryData<HealthCheckResponse>) =>
    done(null, serving),
});
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${port}\n`);
});
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
process.on("SIGINT", () => server.forceShutdown());
