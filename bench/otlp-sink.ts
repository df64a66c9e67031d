/**
 * An OTLP/gRPC trace sink for the data-path benchmark, run as its own process so its CPU is
 * not a sidecar's: it serves opentelemetry.proto.collector.trace.v1.TraceService/Export,
 * accepts every request and discards it unparsed (an empty ExportTraceServiceResponse is
 * zero bytes). Prints "ready PORT"; on SIGTERM prints the exports and bytes it took.
 */
import * as grpc from '@grpc/grpc-js';

const raw = (b: Buffer) => b;
const service: grpc.ServiceDefinition = {
  Export: {
    path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
};
let exports = 0;
let bytes = 0;
const empty = Buffer.alloc(0);
const server = new grpc.Server();
server.addService(service, {
  Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
    exports++;
    bytes += call.request.length;
    cb(null, empty);
  },
});
const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
console.log(`ready ${port}`);
process.on('SIGTERM', () => {
  console.log(`otlp sink: ${exports} exports, ${bytes} bytes`);
  process.exit(0);
});
