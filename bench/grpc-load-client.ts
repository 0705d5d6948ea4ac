import { create, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

/** A unary or server-streaming method of a generic grpc-js client. */
type Method = (this: grpc.Client, ...args: unknown[]) => unknown;

/**
 * A stock @grpc/grpc-js client for a protobuf-es service, on its own HTTP/2
 * connection: `connection` goes into the channel options, so clients with
 * different numbers never share a subchannel (grpc-js pools equal ones).
 */
export function grpcClient(service: DescService, address: string, connection = 0): grpc.Client {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: false,
      responseStream: method.methodKind === "server_streaming",
      requestSerialize: (message: unknown) =>
        Buffer.from(toBinary(method.input, create(method.input, message as never))),
      requestDeserialize: (bytes: Buffer) => fromBinary(method.input, bytes),
      responseSerialize: (message: unknown) =>
        Buffer.from(toBinary(method.output, create(method.output, message as never))),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
    };
  }
  const Client = grpc.makeGenericClientConstructor(definition, service.typeName);
  return new Client(address, grpc.credentials.createInsecure(), {
    "grpc.bench_connection": connection,
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
  });
}

export function unary<O>(
  client: grpc.Client,
  method: string,
  request: unknown,
  metadata: grpc.Metadata = new grpc.Metadata(),
): Promise<O> {
  return new Promise((resolve, reject) => {
    const call = (client as unknown as Record<string, Method>)[method];
    if (call === undefined) throw new Error(`no method ${method}`);
    call.call(client, request, metadata, (error: grpc.ServiceError | null, response: O) =>
      error === null ? resolve(response) : reject(error),
    );
  });
}

export function serverStream<O>(
  client: grpc.Client,
  method: string,
  request: unknown,
): grpc.ClientReadableStream<O> {
  const call = (client as unknown as Record<string, Method>)[method];
  if (call === undefined) throw new Error(`no method ${method}`);
  return call.call(client, request) as grpc.ClientReadableStream<O>;
}
